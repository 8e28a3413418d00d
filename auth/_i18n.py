"""Page text in English and Japanese. Keys are stable; add both languages at once."""

from __future__ import annotations

__all__ = ["LANGS", "translate", "translate_message"]

LANGS = ("en", "ja")

_T: dict[str, dict[str, str]] = {
    "title": {"en": "Enclave portal", "ja": "Enclave ポータル"},
    "lang_switch": {"en": "日本語", "ja": "English"},
    "username": {"en": "Username", "ja": "ユーザー名"},
    "password": {"en": "Password", "ja": "パスワード"},
    "password_again": {"en": "Password (again)", "ja": "パスワード（確認）"},
    "next": {"en": "Next", "ja": "次へ"},
    "sign_in": {"en": "Sign in", "ja": "ログイン"},
    "sign_out": {"en": "Sign out", "ja": "ログアウト"},
    "sign_out_everywhere": {"en": "Sign out everywhere", "ja": "すべての端末からログアウト"},
    "second_factor": {"en": "Second factor", "ja": "第二要素"},
    "totp_code": {"en": "Code from your authenticator app", "ja": "認証アプリのコード"},
    "verify": {"en": "Verify", "ja": "確認"},
    "use_key": {"en": "Use security key or passkey", "ja": "セキュリティキー／パスキーを使う"},
    "add_key": {
        "en": "Register a security key or passkey",
        "ja": "セキュリティキー／パスキーを登録",
    },
    "invite": {"en": "Accept an invitation", "ja": "招待を受ける"},
    "invite_code": {"en": "Invitation code", "ja": "招待コード"},
    "set_password": {
        "en": "Choose a password (at least 12 characters; a phrase is good)",
        "ja": "パスワードを設定してください（12文字以上。文章でも構いません）",
    },
    "enrol": {"en": "Enrol your factors", "ja": "認証要素の登録"},
    "totp_scan": {
        "en": "Scan this code with your authenticator app, or type the key below.",
        "ja": "認証アプリでこのコードを読み取るか、下のキーを入力してください。",
    },
    "totp_key": {"en": "Key", "ja": "キー"},
    "enrolled": {"en": "Enrolled factors", "ja": "登録済みの認証要素"},
    "pending_approval": {"en": "waiting for an officer's approval", "ja": "管理者の承認待ち"},
    "finish": {"en": "Finish and sign in", "ja": "完了してログインへ"},
    "my_enclaves": {"en": "My enclaves", "ja": "参加しているエンクレーブ"},
    "no_enclaves": {
        "en": "You are not a member of any enclave.",
        "ja": "参加しているエンクレーブはありません。",
    },
    "enter": {"en": "Enter", "ja": "入室"},
    "tier": {"en": "Tier", "ja": "区分"},
    "sessions": {"en": "My active sessions", "ja": "有効なセッション"},
    "stepup": {"en": "More verification needed", "ja": "追加の認証が必要です"},
    "stepup_intro": {
        "en": "This enclave's tier needs more than this session has proved:",
        "ja": "このエンクレーブの区分では、現在のセッションより強い認証が必要です：",
    },
    "refused": {"en": "Entry refused", "ja": "入室できません"},
    "refused_intro": {
        "en": "You cannot enter this enclave with the factors proved so far:",
        "ja": "これまでに確認された認証要素では、このエンクレーブに入室できません：",
    },
    "allowed": {"en": "Entry allowed", "ja": "入室できます"},
    "back": {"en": "Back to my enclaves", "ja": "エンクレーブ一覧へ戻る"},
    "error": {"en": "Something was not right", "ja": "処理できませんでした"},
    "signed_out": {"en": "You are signed out.", "ja": "ログアウトしました。"},
    "confirm_logout": {
        "en": "An application asked to sign you out. Sign out now?",
        "ja": "アプリケーションがログアウトを要求しています。ログアウトしますか？",
    },
    "js_needed": {
        "en": "Security keys need JavaScript; the other steps work without it.",
        "ja": "セキュリティキーの利用には JavaScript が必要です（他の手順は不要）。",
    },
}


def translate(key: str, lang: str) -> str:
    entry = _T.get(key)
    if entry is None:
        return key
    return entry.get(lang) or entry["en"]


# Error sentences the pages show most; anything not listed is shown as it is (English).
_PAIRS_JA: tuple[tuple[str, str], ...] = (
    (
        "The username or password is not correct.",
        "ユーザー名またはパスワードが正しくありません。",
    ),
    (
        "Too many failed attempts; wait before trying again.",
        "失敗が続いたため、しばらく待ってから再度お試しください。",
    ),
    (
        "Too many failed attempts from your network; wait before trying again.",
        "このネットワークからの失敗が多すぎます。しばらく待ってから再度お試しください。",
    ),
    (
        "This authenticator is disabled after too many failed attempts; ask a s"
        "ecurity officer to re-bind it.",
        "失敗が多すぎたため、この認証器は無効になりました。セキュリテ"
        "ィ管理者に再登録を依頼してください。",
    ),
    (
        "The code is not correct.",
        "コードが正しくありません。",
    ),
    (
        "That code was already used; wait for the next one.",
        "このコードは使用済みです。次のコードが表示されるまでお待ちください。",
    ),
    (
        "The form expired or did not come from this site; reload the page.",
        "フォームの有効期限が切れたか、このサイトから送信されたもので"
        "はありません。ページを再読み込みしてください。",
    ),
    (
        "You are not signed in.",
        "ログインしていません。",
    ),
    (
        "That invitation code is not valid, was used, or has expired.",
        "招待コードが無効、使用済み、または期限切れです。",
    ),
    (
        "The two passwords differ.",
        "2つのパスワードが一致しません。",
    ),
    (
        "That password is on a list of common passwords; choose another.",
        "よく使われるパスワードの一覧に含まれています。別のパスワードを選んでください。",
    ),
    (
        "The password must not contain your username.",
        "パスワードにユーザー名を含めることはできません。",
    ),
    (
        "The code does not match; check your device's clock and try again.",
        "コードが一致しません。端末の時刻を確認して再度お試しください。",
    ),
    (
        "You are not a member of an enclave of that name.",
        "その名前のエンクレーブのメンバーではありません。",
    ),
)
_MESSAGES_JA: dict[str, str] = dict(_PAIRS_JA)


def translate_message(message: str, lang: str) -> str:
    """The page-language version of a known error sentence (English otherwise)."""
    if lang != "ja":
        return message
    if message in _MESSAGES_JA:
        return _MESSAGES_JA[message]
    prefix = "The password must be at least "
    if message.startswith(prefix) and message.endswith(" characters long."):
        n = message[len(prefix) : -len(" characters long.")]
        return f"パスワードは{n}文字以上にしてください。"
    return message
