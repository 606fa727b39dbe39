//! Console sessions: a signed cookie, a CSRF token per session, and the origin check.
//!
//! Why signed and not stored: the console keeps no table of its own, and any replica must accept
//! a session another replica issued. The cookie is `v1.<issued>.<nonce>.<mac>`, the MAC an
//! HMAC-SHA-256 under a key derived from the admin token ([`AdminToken::derive_key`]), so the
//! token itself never leaves the sign-in form, a cookie copied from the browser says nothing
//! about it, and changing the token ends every session. A session lasts [`SESSION_TTL`]; signing
//! out clears the cookie in the browser (a copied cookie stays valid until it expires: there is
//! no server-side list to strike it from, which is the price of keeping none).
//!
//! CSRF: every form carries the session's token, an HMAC of the cookie's value under a second
//! derived key, checked in constant time on every POST; the cookie is `SameSite=Strict`; and a
//! POST whose `Origin` (or, without one, `Referer`) names another host is refused before anything
//! else is read. The cookie is `HttpOnly`, `Path=/ui`, and `Secure` when the request came through
//! a TLS-terminating proxy (`X-Forwarded-Proto: https` or `Forwarded: proto=https`): the
//! controller serves plain HTTP itself, so `Secure` on http://127.0.0.1 would make the browser
//! drop the cookie. Trusting that header can only add `Secure`, never remove a protection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::AdminToken;

/// The cookie's name.
pub(crate) const COOKIE: &str = "vr_console";
/// How long a session lasts after sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// A cookie issued this far in the future (clock skew between replicas) is still accepted.
const SKEW: u64 = 60;

/// The keys sessions are signed with, derived from the admin token. `Debug` shows nothing.
#[derive(Clone)]
pub(crate) struct Keys {
    session: [u8; 32],
    csrf: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// A signed-in session: its cookie value and the CSRF token its forms carry.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(..)")
    }
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    for p in parts {
        m.update(p);
        m.update(b"|");
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keys {
    pub(crate) fn new(token: &AdminToken) -> Self {
        Self {
            session: token.derive_key("vapi-reconciler console session v1"),
            csrf: token.derive_key("vapi-reconciler console csrf v1"),
        }
    }

    /// A new session's cookie value.
    pub(crate) fn issue(&self) -> String {
        let issued = unix_now().to_string();
        let nonce = hex(&rand::random::<[u8; 16]>());
        let tag = hex(&mac(&self.session, &[issued.as_bytes(), nonce.as_bytes()]));
        format!("v1.{issued}.{nonce}.{tag}")
    }

    /// The session a cookie value stands for, when its MAC holds and it has not expired.
    pub(crate) fn open(&self, value: &str) -> Option<Session> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(issued), Some(nonce), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expected = hex(&mac(&self.session, &[issued.as_bytes(), nonce.as_bytes()]));
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let issued: u64 = issued.parse().ok()?;
        let now = unix_now();
        if issued > now + SKEW || now.saturating_sub(issued) > SESSION_TTL.as_secs() {
            return None;
        }
        Some(Session {
            csrf: hex(&mac(&self.csrf, &[value.as_bytes()])),
        })
    }
}

impl Session {
    /// Whether a form's CSRF field is this session's, in constant time.
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The console cookie's value among the request's cookies.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request came through a proxy that terminated TLS.
fn over_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    forwarded_proto || forwarded
}

/// `Set-Cookie` for a new session.
pub(crate) fn set_cookie(value: &str, headers: &HeaderMap) -> String {
    let secure = if over_https(headers) { "; Secure" } else { "" };
    format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub(crate) fn clear_cookie(headers: &HeaderMap) -> String {
    let secure = if over_https(headers) { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Whether a POST comes from a page of this host: its `Origin`, else its `Referer`, must name
/// the host the request was sent to. Neither header: refused (every browser sends `Origin` on a
/// form POST).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys(token: &str) -> Keys {
        Keys::new(&AdminToken::new(token).expect("a token"))
    }

    #[test]
    fn a_session_opens_only_under_its_own_token() {
        let a = keys("token-a");
        let value = a.issue();
        let session = a.open(&value).expect("opens");
        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches("0"));
        assert!(keys("token-b").open(&value).is_none());
        assert!(!value.contains("token-a"));
        let mut forged = value.clone();
        forged.pop();
        forged.push(if value.ends_with('0') { '1' } else { '0' });
        assert!(a.open(&forged).is_none());
        assert!(a.open("v1.1.2").is_none());
        assert!(a.open("").is_none());
    }

    #[test]
    fn an_old_session_is_refused() {
        let k = keys("token-a");
        let issued = (unix_now() - SESSION_TTL.as_secs() - 1).to_string();
        let nonce = "00";
        let tag = hex(&mac(&k.session, &[issued.as_bytes(), nonce.as_bytes()]));
        assert!(k.open(&format!("v1.{issued}.{nonce}.{tag}")).is_none());
    }

    #[test]
    fn origin_must_name_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&h), "no Origin, no Referer");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://127.0.0.1:8080/ui/agents"),
        );
        assert!(same_origin(&h));
    }

    #[test]
    fn secure_only_behind_tls() {
        let mut h = HeaderMap::new();
        assert!(!set_cookie("v", &h).contains("Secure"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let c = set_cookie("v", &h);
        assert!(c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"));
    }
}
