//! TagResource, UntagResource, ListTagsForResource on clusters, services, task
//! definitions and tasks. A resource is named by its ARN; the ARN of another
//! account or region answers as a missing resource does.

use super::common::input;
use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::{Cluster, ClusterStatus, Service, ServiceStatus, Tag, TaskRecord};
use crate::tables::TaskKey;
use crate::validate;
use serde::Deserialize;
use serde_json::{json, Value};

/// A resource that has tags, as read from the store.
enum Tagged {
    Cluster(Cluster),
    Service {
        cluster: String,
        service: Box<Service>,
    },
    TaskDefinition {
        family: String,
        revision: u32,
    },
    Task(TaskKey, Box<TaskRecord>),
}

/// The kinds of resource an ECS ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cluster,
    Service,
    TaskDefinition,
    Task,
}

fn not_found(kind: Kind) -> ApiError {
    match kind {
        Kind::Cluster => ApiError::cluster_not_found(),
        _ => ApiError::resource_not_found("The specified resource could not be found."),
    }
}

/// The kind and resource part (`cluster/x`) of an ECS ARN, whoever owns it, and
/// whether it is the caller's.
fn parse_arn<'s>(ctx: &Ctx<'_>, arn: &'s str) -> Result<(Kind, &'s str, bool), ApiError> {
    let bad = || ApiError::invalid("Invalid resourceArn: not an ECS resource ARN.");
    let mut parts = arn.splitn(6, ':');
    let head: Vec<&str> = parts.by_ref().take(5).collect();
    let res = parts.next().ok_or_else(bad)?;
    if head.len() != 5 || head[0] != "arn" || head[1] != "aws" || head[2] != "ecs" {
        return Err(bad());
    }
    let own = head[3] == ctx.region && head[4] == ctx.account;
    let kind = match res.split_once('/').map(|(k, _)| k) {
        Some("cluster") => Kind::Cluster,
        Some("service") => Kind::Service,
        Some("task-definition") => Kind::TaskDefinition,
        Some("task") => Kind::Task,
        _ => {
            return Err(ApiError::invalid(
                "Invalid resourceArn: only clusters, services, task definitions and tasks \
                 have tags here.",
            ))
        }
    };
    Ok((kind, res, own))
}

/// Reads the resource an ARN names.
fn resolve(ctx: &Ctx<'_>, c: &CellState, arn: &str) -> Result<Tagged, ApiError> {
    let (kind, res, own) = parse_arn(ctx, arn)?;
    if !own {
        return Err(not_found(kind));
    }
    let rest = res.split_once('/').map(|(_, r)| r).unwrap_or("");
    let found = match kind {
        Kind::Cluster => c
            .clusters()
            .get(ctx.account, rest)?
            .filter(|cl| cl.status == ClusterStatus::Active)
            .map(Tagged::Cluster),
        Kind::Service => match rest.split_once('/') {
            Some((cluster, name)) => c
                .services()
                .get(ctx.account, cluster, name)?
                .filter(|s| s.status != ServiceStatus::Inactive)
                .map(|service| Tagged::Service {
                    cluster: cluster.to_string(),
                    service: Box::new(service),
                }),
            None => None,
        },
        Kind::TaskDefinition => match rest.split_once(':') {
            Some((family, rev)) => match rev.parse::<u32>() {
                Ok(revision) => c
                    .task_definitions()
                    .get(ctx.account, family, revision)?
                    .map(|_| Tagged::TaskDefinition {
                        family: family.to_string(),
                        revision,
                    }),
                Err(_) => None,
            },
            None => None,
        },
        Kind::Task => match TaskKey::of_arn(arn) {
            Some(k) => c.tasks().get(&k)?.map(|r| Tagged::Task(k, Box::new(r))),
            None => None,
        },
    };
    found.ok_or_else(|| not_found(kind))
}

impl Tagged {
    fn tags(&self, ctx: &Ctx<'_>, c: &CellState) -> Result<Vec<Tag>, ApiError> {
        Ok(match self {
            Tagged::Cluster(cl) => cl.tags.clone(),
            Tagged::Service { service, .. } => service.tags.clone(),
            Tagged::TaskDefinition { family, revision } => {
                c.task_definitions().tags(ctx.account, family, *revision)?
            }
            Tagged::Task(_, r) => r.task.tags.clone(),
        })
    }

    fn set_tags(self, ctx: &Ctx<'_>, c: &CellState, tags: Vec<Tag>) -> Result<(), ApiError> {
        match self {
            Tagged::Cluster(mut cl) => {
                cl.tags = tags;
                c.clusters().put(ctx.account, &cl)?;
            }
            Tagged::Service {
                cluster,
                mut service,
            } => {
                service.tags = tags;
                c.services().put(ctx.account, &cluster, &service)?;
            }
            Tagged::TaskDefinition { family, revision } => {
                c.task_definitions()
                    .put_tags(ctx.account, &family, revision, &tags)?;
            }
            Tagged::Task(k, mut r) => {
                r.task.tags = tags;
                c.tasks().put(&k, &r)?;
            }
        }
        Ok(())
    }
}

fn required(arn: Option<String>) -> Result<String, ApiError> {
    arn.filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::invalid("resourceArn can not be blank."))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagInput {
    resource_arn: Option<String>,
    tags: Option<Vec<Tag>>,
}

/// TagResource: adds tags, replacing the values of keys already there.
pub fn tag(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: TagInput = input(v)?;
    let arn = required(inp.resource_arn)?;
    let new = inp
        .tags
        .ok_or_else(|| ApiError::invalid("tags can not be blank."))?;
    validate::request::tags(&new)?;
    let r = resolve(ctx, c, &arn)?;
    let mut all = r.tags(ctx, c)?;
    for t in new {
        match all.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value,
            None => all.push(t),
        }
    }
    validate::request::tag_count(&all)?;
    r.set_tags(ctx, c, all)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagInput {
    resource_arn: Option<String>,
    tag_keys: Option<Vec<String>>,
}

/// UntagResource: removes tags by key (keys not there are ignored).
pub fn untag(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: UntagInput = input(v)?;
    let arn = required(inp.resource_arn)?;
    let keys = inp.tag_keys.unwrap_or_default();
    validate::request::tag_keys(&keys)?;
    let r = resolve(ctx, c, &arn)?;
    let mut all = r.tags(ctx, c)?;
    all.retain(|t| !keys.contains(&t.key));
    r.set_tags(ctx, c, all)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    resource_arn: Option<String>,
}

/// ListTagsForResource (the managed `aws:` tags included).
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let arn = required(inp.resource_arn)?;
    let r = resolve(ctx, c, &arn)?;
    Ok(json!({"tags": r.tags(ctx, c)?}))
}

/// Whether an `include` parameter asks for `TAGS`.
pub fn wants_tags(include: Option<&[String]>) -> bool {
    include.is_some_and(|i| i.iter().any(|x| x == "TAGS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_kind_and_owner() {
        let ctx = Ctx {
            account: "111",
            region: "us-east-1",
        };
        let p = |a: &str| parse_arn(&ctx, a).map(|(k, r, o)| (k, r.to_string(), o));
        assert_eq!(
            p("arn:aws:ecs:us-east-1:111:cluster/c").unwrap(),
            (Kind::Cluster, "cluster/c".into(), true)
        );
        assert_eq!(
            p("arn:aws:ecs:us-east-1:222:service/c/s").unwrap(),
            (Kind::Service, "service/c/s".into(), false)
        );
        assert!(!p("arn:aws:ecs:eu-west-1:111:task/c/abc").unwrap().2);
        assert_eq!(
            p("arn:aws:ecs:us-east-1:111:task-definition/f:1")
                .unwrap()
                .0,
            Kind::TaskDefinition
        );
        for bad in [
            "nonsense",
            "arn:aws:s3:us-east-1:111:cluster/c",
            "arn:aws:ecs:us-east-1:111:container-instance/c/x",
            "arn:aws:ecs:us-east-1:111",
        ] {
            assert_eq!(
                p(bad).unwrap_err().kind,
                "InvalidParameterException",
                "{bad}"
            );
        }
    }
}
