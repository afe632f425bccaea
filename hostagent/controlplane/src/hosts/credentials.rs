//! Host credentials: a random secret issued at registration and at each rotation,
//! stored only as its SHA-256, valid for a TTL. After a rotation the previous
//! credential stays valid for a short overlap, so an agent that lost the answer
//! can still reconnect and rotate again; then it is refused.

use crate::frontend::sigv4::constant_time_eq;
use crate::model::HostRecord;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub use crate::config::CredentialPolicy;

/// The shortest time between two rotations of one host (a tenth of the TTL, at most
/// a minute): an agent cannot make the control plane rewrite its record in a loop.
pub fn min_rotation_interval(policy: &CredentialPolicy) -> Duration {
    (policy.ttl / 10).min(Duration::from_secs(60))
}

/// Why a credential is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CredentialError {
    /// Neither the current nor (within its overlap) the previous credential.
    #[error("invalid host credential")]
    Invalid,
    /// The right credential, but past its expiry.
    #[error("host credential expired; the host must register again")]
    Expired,
    /// The operator revoked the host.
    #[error("host was revoked by the operator; it must register again")]
    Revoked,
    /// A rotation came too soon after the previous one.
    #[error("credential rotated less than {0} ms ago; try later")]
    TooSoon(u128),
}

/// A new random secret (244 random bits, hex).
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// SHA-256 (hex) of a secret, as stored.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Gives `rec` the credential `secret`, issued at `now`.
pub fn issue(rec: &mut HostRecord, secret: &str, policy: &CredentialPolicy, now: f64) {
    rec.credential_sha256 = hash(secret);
    rec.credential_issued_at = now;
    rec.credential_expires_at = now + policy.ttl.as_secs_f64();
}

/// Checks `secret` against the host's credentials at `now`; returns until when the
/// credential it matched is valid.
pub fn verify(rec: &HostRecord, secret: &str, now: f64) -> Result<f64, CredentialError> {
    let got = hash(secret);
    let current = constant_time_eq(got.as_bytes(), rec.credential_sha256.as_bytes());
    let previous = rec
        .previous_credential_sha256
        .as_deref()
        .is_some_and(|p| constant_time_eq(got.as_bytes(), p.as_bytes()));
    let until = if current {
        rec.credential_expires_at
    } else if previous {
        rec.previous_valid_until.min(rec.credential_expires_at)
    } else {
        return Err(CredentialError::Invalid);
    };
    if rec.revoked_at.is_some() {
        return Err(CredentialError::Revoked);
    }
    if now >= until {
        return Err(if current {
            CredentialError::Expired
        } else {
            CredentialError::Invalid
        });
    }
    Ok(until)
}

/// Rotates the host's credential at `now`: returns the new secret (the record, to
/// be stored by the caller, keeps the old one as previous for the overlap).
pub fn rotate(
    rec: &mut HostRecord,
    policy: &CredentialPolicy,
    now: f64,
) -> Result<String, CredentialError> {
    if rec.revoked_at.is_some() {
        return Err(CredentialError::Revoked);
    }
    if now >= rec.credential_expires_at {
        return Err(CredentialError::Expired);
    }
    let min = min_rotation_interval(policy);
    if now - rec.credential_issued_at < min.as_secs_f64() {
        return Err(CredentialError::TooSoon(min.as_millis()));
    }
    rec.previous_credential_sha256 = Some(rec.credential_sha256.clone());
    rec.previous_valid_until = now + policy.overlap.as_secs_f64();
    let secret = new_secret();
    issue(rec, &secret, policy, now);
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostStatus;

    fn host(secret: &str, policy: &CredentialPolicy) -> HostRecord {
        let mut r = HostRecord {
            host_id: "h-0-x".into(),
            hostname: "h".into(),
            availability_zone: "az".into(),
            cpu: 1,
            memory: 1,
            credential_sha256: String::new(),
            registered_at: 100.0,
            status: HostStatus::Active,
            token_id: "t".into(),
            credential_issued_at: 0.0,
            credential_expires_at: 0.0,
            previous_credential_sha256: None,
            previous_valid_until: 0.0,
            revoked_at: None,
        };
        issue(&mut r, secret, policy, 100.0);
        r
    }

    #[test]
    fn expiry_rotation_overlap_and_revocation() {
        let p = CredentialPolicy {
            ttl: Duration::from_secs(100),
            overlap: Duration::from_secs(10),
        };
        let mut r = host("s1", &p);
        assert_eq!(verify(&r, "s1", 150.0), Ok(200.0));
        assert_eq!(verify(&r, "other", 150.0), Err(CredentialError::Invalid));
        assert_eq!(verify(&r, "s1", 200.0), Err(CredentialError::Expired));
        // Too soon after issue (min interval: 10 s of a 100 s TTL).
        assert!(matches!(
            rotate(&mut r.clone(), &p, 105.0),
            Err(CredentialError::TooSoon(_))
        ));
        let s2 = rotate(&mut r, &p, 150.0).unwrap();
        assert_ne!(s2, "s1");
        assert_eq!(verify(&r, &s2, 151.0), Ok(250.0));
        assert_eq!(verify(&r, "s1", 159.0), Ok(160.0), "old one in the overlap");
        assert_eq!(verify(&r, "s1", 160.0), Err(CredentialError::Invalid));
        assert!(!format!("{r:?}").contains(&s2), "only the hash is kept");
        r.revoked_at = Some(170.0);
        assert_eq!(verify(&r, &s2, 171.0), Err(CredentialError::Revoked));
        assert_eq!(verify(&r, "x", 171.0), Err(CredentialError::Invalid));
        assert_eq!(rotate(&mut r, &p, 200.0), Err(CredentialError::Revoked));
        // A record of an older version (no expiry) is expired.
        let mut old = host("s", &p);
        old.credential_expires_at = 0.0;
        assert_eq!(verify(&old, "s", 1.0), Err(CredentialError::Expired));
    }
}
