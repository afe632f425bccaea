//! Who is calling: the caller's account and the region of the ARNs it sees, and
//! the ids of new resources. Handlers and the domain code both take a [`Ctx`].

/// Who is calling.
pub struct Ctx<'a> {
    /// The caller's account.
    pub account: &'a str,
    /// The region of ARNs.
    pub region: &'a str,
}

impl Ctx<'_> {
    /// `arn:aws:ecs:<region>:<account>:<resource>`.
    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{}", self.region, self.account, resource)
    }

    /// The resource part of an ARN of this caller (`cluster/x`), or None when
    /// `s` is not an ECS ARN of this region and account.
    pub fn own_resource<'s>(&self, s: &'s str) -> Option<&'s str> {
        let p = format!("arn:aws:ecs:{}:{}:", self.region, self.account);
        s.strip_prefix(p.as_str())
    }
}

/// A new random id (32 hex digits of a v4 UUID), for task ids and ENI names.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
