//! What the ECS operations share: decoding the input, paging a listing, and the
//! parameters several resources take (`cluster`, `networkConfiguration`,
//! `launchType`, `service`).

use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::{
    AwsVpcConfiguration, CapacityProviderStrategyItem, Cluster, ClusterStatus, NetworkConfiguration,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes an operation's input into its typed request: a value of the wrong JSON
/// type is a `SerializationException` naming the field; keys the operation does not
/// define are dropped.
pub fn input<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        // serde quotes the offending value: keep the message short.
        let why: String = e.inner().to_string().chars().take(300).collect();
        ApiError::serialization(format!("Invalid value for {path}: {why}"))
    })
}

/// One page of `items` (sorted by key): the `nextToken` is the last key, hex.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    next_token: Option<&str>,
    max_results: Option<i64>,
    default_max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max_results {
        None => default_max,
        Some(m) if (1..=100).contains(&m) => m as usize,
        Some(_) => return Err(ApiError::invalid("maxResults must be between 1 and 100.")),
    };
    let after = match next_token {
        None | Some("") => None,
        Some(t) => Some(
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("Invalid nextToken."))?,
        ),
    };
    let mut page = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if after.as_ref().is_some_and(|a| k.as_str() <= a.as_str()) {
            continue;
        }
        if page.len() == max {
            more = true;
            break;
        }
        last = Some(k);
        page.push(v);
    }
    let token = if more { last.map(hex::encode) } else { None };
    Ok((page, token))
}

/// The cluster name a `cluster` parameter (name or ARN, default `default`) denotes.
pub fn cluster_name(ctx: &Ctx<'_>, s: Option<&str>) -> Result<String, ApiError> {
    let s = s.unwrap_or("default");
    if s.starts_with("arn:") {
        return ctx
            .own_resource(s)
            .and_then(|r| r.strip_prefix("cluster/"))
            .map(str::to_string)
            .ok_or_else(ApiError::cluster_not_found);
    }
    Ok(s.to_string())
}

/// The ACTIVE cluster a `cluster` parameter denotes.
pub fn active_cluster(ctx: &Ctx<'_>, c: &CellState, s: Option<&str>) -> Result<Cluster, ApiError> {
    let name = cluster_name(ctx, s)?;
    match c.clusters().get(ctx.account, &name)? {
        Some(cl) if cl.status == ClusterStatus::Active => Ok(cl),
        _ => Err(ApiError::cluster_not_found()),
    }
}

/// Validates a `networkConfiguration` the way ECS does for awsvpc tasks.
pub fn network(n: Option<&NetworkConfiguration>) -> Result<AwsVpcConfiguration, ApiError> {
    Ok(crate::validate::request::network(n)?)
}

/// Checks `launchType` (only FARGATE is served).
pub fn launch_type(l: Option<&str>) -> Result<(), ApiError> {
    match l {
        None | Some("FARGATE") => Ok(()),
        Some(x @ ("EC2" | "EXTERNAL")) => Err(ApiError::invalid(format!(
            "launchType {x} is not supported: this control plane runs FARGATE tasks only."
        ))),
        Some(x) => Err(ApiError::invalid(format!("Invalid launchType: {x}"))),
    }
}

/// The capacity provider strategy of a RunTask or CreateService on `cluster`: the
/// one given (not with a `launchType`), else none with a `launchType`, else the
/// cluster's default. Empty: launch type FARGATE, no provider.
pub fn strategy(
    cluster: &Cluster,
    launch: Option<&str>,
    given: Option<Vec<CapacityProviderStrategyItem>>,
) -> Result<Vec<CapacityProviderStrategyItem>, ApiError> {
    let given = given.unwrap_or_default();
    if !given.is_empty() {
        if launch.is_some() {
            return Err(ApiError::invalid(
                "Specifying both a launchType and a capacityProviderStrategy is not supported.",
            ));
        }
        crate::validate::request::capacity_provider_strategy(&given, &cluster.capacity_providers)?;
        return Ok(given);
    }
    launch_type(launch)?;
    if launch.is_some() {
        return Ok(vec![]);
    }
    Ok(cluster.default_capacity_provider_strategy.clone())
}

/// The service name a `service` parameter (name or ARN) denotes.
pub fn service_name(ctx: &Ctx<'_>, s: &str) -> String {
    if let Some(r) = ctx.own_resource(s).and_then(|r| r.strip_prefix("service/")) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens() {
        let items = |n: usize| (0..n).map(|i| (format!("k{i:02}"), i)).collect::<Vec<_>>();
        let (p, t) = paginate(items(5), None, Some(2), 100).unwrap();
        assert_eq!(p, vec![0, 1]);
        let (p, t) = paginate(items(5), t.as_deref(), Some(2), 100).unwrap();
        assert_eq!(p, vec![2, 3]);
        let (p, t) = paginate(items(5), t.as_deref(), Some(2), 100).unwrap();
        assert_eq!((p, t), (vec![4], None));
        assert!(paginate(items(1), None, Some(0), 100).is_err());
        assert!(paginate(items(1), Some("zz"), None, 100).is_err());
    }
}
