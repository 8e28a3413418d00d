// The portal's only script: runs a WebAuthn ceremony and posts the result in a form.
// Served as a static file so the CSP can forbid inline script.
"use strict";
(function () {
  function b64urlToBuf(s) {
    const pad = "=".repeat((4 - (s.length % 4)) % 4);
    const bin = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  }
  function bufToB64url(buf) {
    const bytes = new Uint8Array(buf);
    let bin = "";
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function toJSON(cred) {
    if (typeof cred.toJSON === "function") return cred.toJSON();
    const r = cred.response, out = { id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type,
      clientExtensionResults: cred.getClientExtensionResults(), response: {
        clientDataJSON: bufToB64url(r.clientDataJSON) } };
    if (r.attestationObject) out.response.attestationObject = bufToB64url(r.attestationObject);
    if (r.authenticatorData) out.response.authenticatorData = bufToB64url(r.authenticatorData);
    if (r.signature) out.response.signature = bufToB64url(r.signature);
    if (r.userHandle) out.response.userHandle = bufToB64url(r.userHandle);
    return out;
  }
  function showError(msg) {
    let el = document.getElementById("error");
    if (!el) {
      el = document.createElement("p");
      el.id = "error"; el.className = "error"; el.setAttribute("role", "alert");
      document.querySelector("h1").after(el);
    }
    el.textContent = msg;
  }
  async function run(button) {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const resp = await fetch(button.dataset.options, { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf } });
    const body = await resp.json();
    if (!resp.ok) { showError(body.detail || "The server refused to start the ceremony."); return; }
    let cred;
    try {
      if (button.dataset.webauthn === "create") {
        const o = body;
        o.challenge = b64urlToBuf(o.challenge);
        o.user.id = b64urlToBuf(o.user.id);
        (o.excludeCredentials || []).forEach((c) => { c.id = b64urlToBuf(c.id); });
        cred = await navigator.credentials.create({ publicKey: o });
      } else {
        const o = body;
        o.challenge = b64urlToBuf(o.challenge);
        (o.allowCredentials || []).forEach((c) => { c.id = b64urlToBuf(c.id); });
        cred = await navigator.credentials.get({ publicKey: o });
      }
    } catch (e) {
      showError("The security key did not complete: " + e.name);
      return;
    }
    const form = button.closest("form");
    form.querySelector('input[name="credential"]').value = JSON.stringify(toJSON(cred));
    form.submit();
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-webauthn]").forEach((b) => {
      b.addEventListener("click", function () { run(b); });
    });
  });
})();
