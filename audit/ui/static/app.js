// Officer UI behaviour. Loaded from /ui/static (CSP script-src 'self'); no inline script.
"use strict";

function b64decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// RFC 9162 section 2.1.3.2, step by step (the same steps as audit._merkle.verify_inclusion).
async function verifyInclusion(entry, index, size, proof, root) {
  if (index >= size) return false;                         // 1
  let fn = index, sn = size - 1;                           // 2
  let r = await sha256(concat(new Uint8Array([0]), entry)); // 3: leaf hash
  for (const p of proof) {                                 // 4
    if (sn === 0) return false;
    if ((fn & 1) === 1 || fn === sn) {
      r = await sha256(concat(new Uint8Array([1]), p, r));
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) { fn >>>= 1; sn >>>= 1; }
      }
    } else {
      r = await sha256(concat(new Uint8Array([1]), r, p));
    }
    fn >>>= 1; sn >>>= 1;
  }
  return sn === 0 && equal(r, root);                       // 5
}

// C2SP signed-note: verify the Ed25519 signature line matching the verifier key.
async function verifyNote(text, vkey) {
  // name+hexid+base64: the base64 part may itself contain "+", so split only twice
  const v = vkey.trim();
  const p1 = v.indexOf("+");
  const p2 = v.indexOf("+", p1 + 1);
  if (p1 < 0 || p2 < 0) return false;
  const name = v.slice(0, p1);
  const hexid = v.slice(p1 + 1, p2);
  const keyb64 = v.slice(p2 + 1);
  const key = b64decode(keyb64);
  if (key[0] !== 1 || key.length !== 33) return false;
  const sep = text.indexOf("\n\n");
  if (sep < 0) return false;
  const body = new TextEncoder().encode(text.slice(0, sep + 1));
  const lines = text.slice(sep + 2).split("\n").filter((l) => l.length > 0);
  const pub = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  for (const line of lines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const sig = b64decode(m[2]);
    const id = Array.from(sig.slice(0, 4)).map((b) => b.toString(16).padStart(2, "0")).join("");
    if (id !== hexid || sig.length !== 68) continue;
    if (await crypto.subtle.verify({ name: "Ed25519" }, pub, sig.slice(4), body)) return true;
  }
  return false;
}

function show(el, ok, okText, badText) {
  el.textContent = ok ? okText : badText;
  el.className = ok ? "ok" : "bad";
  el.dataset.verified = ok ? "true" : "false";
}

async function checkProofPage() {
  const box = document.getElementById("proof");
  if (!box) return;
  const res = document.getElementById("proof-result");
  const sigRes = document.getElementById("sig-result");
  const d = box.dataset;
  const hashes = d.hashes ? d.hashes.split(" ").filter((h) => h).map(b64decode) : [];
  let rootOk = false;
  try {
    rootOk = await verifyInclusion(b64decode(d.entry), Number(d.index), Number(d.size), hashes, b64decode(d.root));
  } catch (e) {
    rootOk = false;
  }
  show(res, rootOk, res.dataset.ok, res.dataset.bad);
  const text = document.getElementById("checkpoint-text").textContent;
  try {
    const sigOk = await verifyNote(text, d.vkey);
    // the checkpoint's second line is the root hash the proof was checked against
    const cpRoot = text.split("\n")[2] || "";
    show(sigRes, sigOk && cpRoot === d.root, sigRes.dataset.ok, sigRes.dataset.bad);
  } catch (e) {
    sigRes.textContent = sigRes.dataset.unsupported;
    sigRes.className = "pending";
    sigRes.dataset.verified = "unsupported";
  }
}

function csrfOf(form) {
  const f = form.querySelector("input[name=csrf]");
  return f ? f.value : "";
}

async function pollVerify(job) {
  const status = document.getElementById("verify-status");
  const bar = document.getElementById("verify-progress");
  const count = document.getElementById("verify-count");
  const result = document.getElementById("verify-result");
  status.hidden = false;
  result.textContent = status.dataset.running;
  result.className = "pending";
  for (;;) {
    const r = await fetch(`/ui/verify/${encodeURIComponent(job)}.json`, { credentials: "same-origin" });
    if (!r.ok) { result.textContent = `HTTP ${r.status}`; result.className = "bad"; return; }
    const s = await r.json();
    bar.max = Math.max(1, s.total);
    bar.value = s.done;
    count.textContent = `${s.done} / ${s.total}`;
    if (s.finished) {
      result.textContent = (s.ok ? status.dataset.ok : status.dataset.bad) + " " + s.message;
      result.className = s.ok ? "ok" : "bad";
      result.dataset.verified = s.ok ? "true" : "false";
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function setupVerify() {
  const form = document.getElementById("verify-form");
  if (!form) return;
  const params = new URLSearchParams(window.location.search);
  if (params.get("job")) pollVerify(params.get("job"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/ui/verify", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfOf(form) },
    });
    if (!r.ok) {
      const result = document.getElementById("verify-result");
      document.getElementById("verify-status").hidden = false;
      result.textContent = `HTTP ${r.status}`;
      result.className = "bad";
      return;
    }
    const s = await r.json();
    await pollVerify(s.job);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  checkProofPage();
  setupVerify();
});
