"""English and Japanese labels of the officer UI (one table; a missing key fails a test)."""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["LABELS", "LANGS", "pick_lang"]

LANGS = ("en", "ja")

_EN = {
    "title": "Enclave audit",
    "overview": "Overview",
    "search": "Search",
    "checkpoints": "Checkpoints",
    "verify": "Verify",
    "logout": "Log out",
    "login": "Log in",
    "login_intro": "Officer access only. Sign in with your portal account; officers need "
    "the officer role and a sign-in with the factors the audit service requires.",
    "login_portal": "Sign in with the portal",
    "bootstrap_title": "Bootstrap officer token",
    "bootstrap_intro": "For setting up, or when the portal is unavailable: paste the "
    "bootstrap officer token. Reads are then recorded as officer:bootstrap.",
    "oidc_off": "Sign-in through the portal is not configured on this audit service.",
    "refused_title": "Sign-in refused",
    "refused_intro": "The audit service did not let you in. The attempt was recorded.",
    "try_again": "Back to the sign-in page",
    "signed_in": "Signed in as {who}.",
    "continue": "Continue",
    "officer_token": "Officer token",
    "login_failed": "That token is not valid. The attempt was recorded.",
    "login_locked": "Too many failed attempts: the login is locked for {seconds} s. "
    "This was recorded.",
    "actor": "Actor",
    "enclave": "Enclave",
    "action": "Action",
    "outcome": "Outcome",
    "source": "Source",
    "since": "From (UTC)",
    "until": "Until (UTC)",
    "apply": "Search",
    "order": "Order",
    "newest_first": "Newest first",
    "oldest_first": "Oldest first",
    "index": "Index",
    "time": "Time (sender)",
    "received": "Received (log)",
    "client_ip": "Client IP",
    "details": "Details",
    "next_page": "Next page",
    "export_csv": "Export CSV",
    "export_json": "Export JSON",
    "no_results": "No events match.",
    "timeline": "Timeline",
    "timeline_of": "Timeline of",
    "unentitled": "(this source may not send this action: not counted)",
    "event": "Event",
    "entry_bytes": "Leaf bytes (exact, as hashed)",
    "leaf_hash": "Leaf hash",
    "proof": "Inclusion proof",
    "checkpoint": "Checkpoint",
    "tree_size": "Tree size",
    "root_hash": "Root hash",
    "proof_checking": "Checking the proof in this browser…",
    "proof_ok": "Verified in this browser: the entry is in the signed tree.",
    "proof_bad": "NOT verified: the proof does not lead to the signed root.",
    "sig_ok": "Checkpoint signature verified in this browser.",
    "sig_bad": "Checkpoint signature does NOT verify.",
    "sig_unsupported": "This browser cannot check Ed25519; the server checked it.",
    "server_check": "Server check",
    "not_in_checkpoint": "This entry is not yet covered by a signed checkpoint.",
    "verify_intro": "Recompute every leaf and the tree root from the stored entries and "
    "compare with the latest signed checkpoint.",
    "verify_now": "Verify the whole log now",
    "verify_running": "Verifying…",
    "verify_ok": "The log is intact.",
    "verify_bad": "The log FAILED verification.",
    "publish_now": "Sign a checkpoint now",
    "size": "Size",
    "signed_note": "Signed note",
    "entries_per_day": "Enclave entries per day, by enclave",
    "failed_factors": "Failed authentication factors per day",
    "lockouts": "Lockouts per day",
    "exports": "Exports per day",
    "last_days": "last 14 days",
    "total": "Total",
    "language": "日本語",
    "verifier_key": "Verifier key",
}

_JA = {
    "title": "Enclave 監査ログ",
    "overview": "概要",
    "search": "検索",
    "checkpoints": "チェックポイント",
    "verify": "検証",
    "logout": "ログアウト",
    "login": "ログイン",
    "login_intro": "監査担当者専用です。ポータルのアカウントでサインインしてください。"
    "担当者ロールと、監査サービスが求める認証要素でのサインインが必要です。",
    "login_portal": "ポータルでサインイン",
    "bootstrap_title": "ブートストラップ用の担当者トークン",
    "bootstrap_intro": "初期設定時やポータルが利用できないとき用です。ブートストラップ用の担当者"
    "トークンを入力してください。閲覧は officer:bootstrap として記録されます。",
    "oidc_off": "この監査サービスではポータルによるサインインが設定されていません。",
    "refused_title": "サインインが拒否されました",
    "refused_intro": "監査サービスへのアクセスは許可されませんでした。この試行は記録されました。",
    "try_again": "サインインページに戻る",
    "signed_in": "{who} としてサインインしました。",
    "continue": "続ける",
    "officer_token": "担当者トークン",
    "login_failed": "トークンが正しくありません。この試行は記録されました。",
    "login_locked": "失敗が多すぎるため、ログインは {seconds} 秒間ロックされています。"
    "この事象は記録されました。",
    "actor": "実行者",
    "enclave": "エンクレーブ",
    "action": "操作",
    "outcome": "結果",
    "source": "送信元",
    "since": "開始 (UTC)",
    "until": "終了 (UTC)",
    "apply": "検索",
    "order": "並び順",
    "newest_first": "新しい順",
    "oldest_first": "古い順",
    "index": "番号",
    "time": "時刻 (送信側)",
    "received": "受信時刻 (ログ)",
    "client_ip": "接続元 IP",
    "details": "詳細",
    "next_page": "次のページ",
    "export_csv": "CSV で出力",
    "export_json": "JSON で出力",
    "no_results": "該当するイベントはありません。",
    "timeline": "時系列",
    "timeline_of": "時系列:",
    "unentitled": "(この送信元はこの操作を送れません: 集計対象外)",
    "event": "イベント",
    "entry_bytes": "リーフのバイト列 (ハッシュ対象そのもの)",
    "leaf_hash": "リーフハッシュ",
    "proof": "包含証明",
    "checkpoint": "チェックポイント",
    "tree_size": "ツリーサイズ",
    "root_hash": "ルートハッシュ",
    "proof_checking": "このブラウザで証明を検証しています…",
    "proof_ok": "このブラウザで検証済み: このエントリは署名済みツリーに含まれています。",
    "proof_bad": "検証失敗: 証明が署名済みルートに一致しません。",
    "sig_ok": "チェックポイントの署名をこのブラウザで検証しました。",
    "sig_bad": "チェックポイントの署名が一致しません。",
    "sig_unsupported": "このブラウザは Ed25519 を検証できません。サーバー側で検証済みです。",
    "server_check": "サーバー側の検証",
    "not_in_checkpoint": "このエントリはまだ署名済みチェックポイントに含まれていません。",
    "verify_intro": "保存された全エントリからリーフとルートを再計算し、"
    "最新の署名済みチェックポイントと照合します。",
    "verify_now": "ログ全体を今すぐ検証",
    "verify_running": "検証中…",
    "verify_ok": "ログは改ざんされていません。",
    "verify_bad": "ログの検証に失敗しました。",
    "publish_now": "今すぐチェックポイントに署名",
    "size": "サイズ",
    "signed_note": "署名付きノート",
    "entries_per_day": "エンクレーブ別の日次入室数",
    "failed_factors": "認証要素の失敗 (日次)",
    "lockouts": "ロックアウト (日次)",
    "exports": "エクスポート (日次)",
    "last_days": "直近 14 日",
    "total": "合計",
    "language": "English",
    "verifier_key": "検証鍵",
}

LABELS: MappingProxyType[str, MappingProxyType[str, str]] = MappingProxyType(
    {"en": MappingProxyType(_EN), "ja": MappingProxyType(_JA)}
)


def pick_lang(*, cookie: str | None, accept_language: str | None) -> str:
    """The cookie's choice when valid, else Japanese when the browser prefers it."""
    if cookie in LANGS:
        return str(cookie)
    if accept_language and accept_language.strip().lower().startswith("ja"):
        return "ja"
    return "en"
