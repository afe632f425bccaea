//! The tags a new task gets: those it is given, those propagated from its task
//! definition or service (`propagateTags`), and the `aws:ecs:*` tags ECS manages
//! (`enableECSManagedTags`).

use crate::cells::CellState;
use crate::model::{PropagateTags, Service, Tag, TaskDefinition};
use crate::store::StoreError;

/// Where a task's tags come from.
pub struct TagSources<'a> {
    /// The caller's account.
    pub account: &'a str,
    /// The cluster name (for `aws:ecs:clusterName`).
    pub cluster: &'a str,
    /// The task definition.
    pub td: &'a TaskDefinition,
    /// The service that starts it, if any.
    pub service: Option<&'a Service>,
    /// Tags given with the call (RunTask).
    pub given: &'a [Tag],
    /// Whose tags to copy.
    pub propagate: PropagateTags,
    /// Whether to add the managed tags.
    pub managed: bool,
}

/// Adds `t` unless a tag of its key is already there (earlier sources win).
fn add(out: &mut Vec<Tag>, t: Tag) {
    if !out.iter().any(|o| o.key == t.key) {
        out.push(t);
    }
}

/// The tags of the new task: given tags first, then the propagated ones (a key
/// given wins), then the managed ones. At most 50 user tags are kept (the first).
pub fn task_tags(c: &CellState, s: &TagSources<'_>) -> Result<Vec<Tag>, StoreError> {
    let mut out = Vec::new();
    for t in s.given {
        add(&mut out, t.clone());
    }
    let propagated = match (s.propagate, s.service) {
        (PropagateTags::TaskDefinition, _) => {
            c.task_definitions()
                .tags(s.account, &s.td.family, s.td.revision)?
        }
        (PropagateTags::Service, Some(svc)) => svc.tags.clone(),
        _ => vec![],
    };
    for t in propagated {
        add(&mut out, t);
    }
    let mut user = 0;
    out.retain(|t| {
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return true;
        }
        user += 1;
        user <= 50
    });
    if s.managed {
        add(
            &mut out,
            Tag {
                key: "aws:ecs:clusterName".into(),
                value: s.cluster.into(),
            },
        );
        if let Some(svc) = s.service {
            add(
                &mut out,
                Tag {
                    key: "aws:ecs:serviceName".into(),
                    value: svc.service_name.clone(),
                },
            );
        }
    }
    Ok(out)
}
