//! Opaque, HMAC-signed paging tokens.
//!
//! Token = URL-safe base64 (no padding) of `payload || tag`, where
//! payload = version, kind, expiry, limit, keyset cursor, and tag =
//! HMAC-SHA256 (key derived from the master key) over a label, the tenant,
//! the scope (group id, or nothing for the group listing) and the payload.
//! Tenant and group are bound by the MAC without being written into the
//! token, so a token replayed for another tenant or group fails to verify.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Result, StoreError};
use crate::keys::KeyRing;
use crate::store::Cursor;
use crate::time::UtcMillis;

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Tokens longer than this are rejected before decoding.
const MAX_TOKEN_LEN: usize = 1024;

/// What a token pages through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    /// Faces of one incarnation of a group.
    Faces {
        group_id: &'a str,
        incarnation: &'a str,
    },
    /// The tenant's groups.
    Groups,
}

impl Scope<'_> {
    fn kind(self) -> u8 {
        match self {
            Scope::Faces { .. } => 1,
            Scope::Groups => 2,
        }
    }
}

/// A verified token's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageState {
    pub limit: usize,
    pub cursor: Cursor,
}

fn mac_input(tenant: &str, scope: Scope<'_>, payload: &[u8]) -> Vec<u8> {
    let (group, incarnation) = match scope {
        Scope::Faces {
            group_id,
            incarnation,
        } => (group_id, incarnation),
        Scope::Groups => ("", ""),
    };
    let mut m =
        Vec::with_capacity(48 + tenant.len() + group.len() + incarnation.len() + payload.len());
    m.extend_from_slice(b"facegate/v1/page-token\0");
    for part in [tenant, group, incarnation] {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    m.extend_from_slice(payload);
    m
}

pub(crate) fn issue(
    keys: &KeyRing,
    tenant: &str,
    scope: Scope<'_>,
    limit: usize,
    cursor: &Cursor,
    expires: UtcMillis,
) -> String {
    let id = cursor.id.as_bytes();
    let mut payload = Vec::with_capacity(24 + id.len() + TAG_LEN);
    payload.push(VERSION);
    payload.push(scope.kind());
    payload.extend_from_slice(&expires.0.to_be_bytes());
    payload.extend_from_slice(&(limit.min(u16::MAX as usize) as u16).to_be_bytes());
    payload.extend_from_slice(&cursor.created_at.0.to_be_bytes());
    payload.extend_from_slice(&(id.len().min(u16::MAX as usize) as u16).to_be_bytes());
    payload.extend_from_slice(id);
    let tag = keys.token_tag(&mac_input(tenant, scope, &payload));
    payload.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(payload)
}

/// Reads big-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
    }
}

pub(crate) fn verify(
    keys: &KeyRing,
    tenant: &str,
    scope: Scope<'_>,
    token: &str,
    now: UtcMillis,
) -> Result<PageState> {
    let bad = StoreError::InvalidToken;
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad("too long"));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad("not base64url"))?;
    if raw.len() < TAG_LEN {
        return Err(bad("too short"));
    }
    let (payload, tag) = raw.split_at(raw.len() - TAG_LEN);
    // Authenticate before interpreting anything in the payload.
    if !keys.verify_token_tag(&mac_input(tenant, scope, payload), tag) {
        return Err(bad("signature mismatch"));
    }
    let mut r = Reader(payload);
    let malformed = || bad("malformed");
    if r.u8().ok_or_else(malformed)? != VERSION {
        return Err(bad("unknown version"));
    }
    if r.u8().ok_or_else(malformed)? != scope.kind() {
        return Err(bad("wrong listing"));
    }
    let expires = r.i64().ok_or_else(malformed)?;
    let limit = r.u16().ok_or_else(malformed)? as usize;
    let created = r.i64().ok_or_else(malformed)?;
    let id_len = r.u16().ok_or_else(malformed)? as usize;
    let id = r.take(id_len).ok_or_else(malformed)?;
    if !r.0.is_empty() {
        return Err(malformed());
    }
    if now.0 > expires {
        return Err(bad("expired"));
    }
    let id = String::from_utf8(id.to_vec()).map_err(|_| malformed())?;
    Ok(PageState {
        limit,
        cursor: Cursor {
            created_at: UtcMillis(created),
            id,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    fn faces(group_id: &str) -> Scope<'_> {
        Scope::Faces {
            group_id,
            incarnation: "1",
        }
    }

    #[test]
    fn a_token_does_not_page_another_incarnation_of_its_group() {
        let ring = KeyRing::new(&MasterKey::generate().unwrap());
        let c = Cursor {
            created_at: UtcMillis(1),
            id: "f".into(),
        };
        let t = issue(&ring, "t", faces("g"), 7, &c, UtcMillis(100));
        let recreated = Scope::Faces {
            group_id: "g",
            incarnation: "2",
        };
        assert!(verify(&ring, "t", recreated, &t, UtcMillis(0)).is_err());
    }

    #[test]
    fn round_trip_and_rejections() {
        let key = MasterKey::generate().unwrap();
        let ring = KeyRing::new(&key);
        let c = Cursor {
            created_at: UtcMillis(1234),
            id: "abc".into(),
        };
        let t = issue(&ring, "t", faces("g"), 7, &c, UtcMillis(100));
        let st = verify(&ring, "t", faces("g"), &t, UtcMillis(100)).unwrap();
        assert_eq!(st.limit, 7);
        assert_eq!(st.cursor, c);
        for (tenant, scope, now) in [
            ("u", faces("g"), 0),
            ("t", faces("h"), 0),
            ("t", Scope::Groups, 0),
            ("t", faces("g"), 101),
        ] {
            assert!(matches!(
                verify(&ring, tenant, scope, &t, UtcMillis(now)),
                Err(StoreError::InvalidToken(_))
            ));
        }
        let other = KeyRing::new(&MasterKey::generate().unwrap());
        assert!(verify(&other, "t", faces("g"), &t, UtcMillis(0)).is_err());
        // Still valid once the key became a previous key.
        let rotated = other.with_previous(&key);
        assert!(verify(&rotated, "t", faces("g"), &t, UtcMillis(0)).is_ok());
        for junk in ["", "!!!", "AAAA", &"A".repeat(5000)] {
            assert!(verify(&ring, "t", faces("g"), junk, UtcMillis(0)).is_err());
        }
    }
}
