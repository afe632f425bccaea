//! Account quotas, with the default values of ECS's service quotas, and the error
//! a call over one gets (`LimitExceededException`, through
//! [`DomainError::LimitExceeded`]).
//!
//! What each check costs (see the handlers that call them):
//! - clusters per account: a scan of the account's clusters (at most the quota)
//!   on CreateCluster of a new cluster;
//! - services per cluster: a scan of the cluster's services (at most the quota)
//!   on CreateService;
//! - tasks per service: a comparison of `desiredCount`;
//! - Fargate vCPUs per account: an in-memory sum per account kept by the cell
//!   (`CellState`), updated as tasks launch and stop, rebuilt when the cell loads;
//! - revisions per family: the family's revision counter, read anyway.

use crate::domain::DomainError;

/// ECS: clusters per account.
pub const DEFAULT_CLUSTERS_PER_ACCOUNT: u64 = 10_000;
/// ECS: services per cluster.
pub const DEFAULT_SERVICES_PER_CLUSTER: u64 = 5_000;
/// ECS: tasks per service (the desired count).
pub const DEFAULT_TASKS_PER_SERVICE: u64 = 5_000;
/// Fargate: On-Demand vCPU resource count (a new account's default).
pub const DEFAULT_FARGATE_VCPUS: u64 = 6;
/// ECS: revisions per task definition family.
pub const DEFAULT_REVISIONS_PER_FAMILY: u64 = 1_000_000;

/// CPU units of one vCPU.
pub const CPU_UNITS_PER_VCPU: u64 = 1024;

/// The quota flags.
#[derive(Debug, Clone, clap::Args)]
pub struct QuotaArgs {
    /// Most clusters (ACTIVE) an account may have (ECS's default: 10000).
    #[arg(long, default_value_t = DEFAULT_CLUSTERS_PER_ACCOUNT)]
    pub quota_clusters_per_account: u64,
    /// Most services (ACTIVE or DRAINING) a cluster may have (ECS's default: 5000).
    #[arg(long, default_value_t = DEFAULT_SERVICES_PER_CLUSTER)]
    pub quota_services_per_cluster: u64,
    /// Highest desiredCount of a service (ECS's default: 5000).
    #[arg(long, default_value_t = DEFAULT_TASKS_PER_SERVICE)]
    pub quota_tasks_per_service: u64,
    /// Most vCPUs (1024 CPU units each) of an account's Fargate tasks that are not
    /// STOPPED, RunTask and services together (Fargate's default for an account: 6).
    #[arg(long, default_value_t = DEFAULT_FARGATE_VCPUS)]
    pub quota_fargate_vcpus: u64,
    /// Most revisions of a task definition family; deregistering one does not free
    /// it (ECS's default: 1000000).
    #[arg(long, default_value_t = DEFAULT_REVISIONS_PER_FAMILY)]
    pub quota_revisions_per_family: u64,
}

/// The effective quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Clusters (ACTIVE) per account.
    pub clusters_per_account: u64,
    /// Services (not INACTIVE) per cluster.
    pub services_per_cluster: u64,
    /// Highest desired count of a service.
    pub tasks_per_service: u64,
    /// vCPUs of an account's tasks that are not STOPPED.
    pub fargate_vcpus: u64,
    /// Revisions per task definition family.
    pub revisions_per_family: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            clusters_per_account: DEFAULT_CLUSTERS_PER_ACCOUNT,
            services_per_cluster: DEFAULT_SERVICES_PER_CLUSTER,
            tasks_per_service: DEFAULT_TASKS_PER_SERVICE,
            fargate_vcpus: DEFAULT_FARGATE_VCPUS,
            revisions_per_family: DEFAULT_REVISIONS_PER_FAMILY,
        }
    }
}

impl From<&QuotaArgs> for Quotas {
    fn from(a: &QuotaArgs) -> Self {
        Quotas {
            clusters_per_account: a.quota_clusters_per_account,
            services_per_cluster: a.quota_services_per_cluster,
            tasks_per_service: a.quota_tasks_per_service,
            fargate_vcpus: a.quota_fargate_vcpus,
            revisions_per_family: a.quota_revisions_per_family,
        }
    }
}

/// The reason ECS gives when an account's Fargate vCPUs are all in use.
pub const VCPU_REASON: &str =
    "You've reached the limit on the number of vCPUs you can run concurrently";

fn exceeded(what: &str) -> DomainError {
    DomainError::LimitExceeded(format!("The limit for the resource was exceeded: {what}."))
}

impl Quotas {
    /// The Fargate vCPU quota in CPU units.
    pub fn fargate_cpu_units(&self) -> u64 {
        self.fargate_vcpus.saturating_mul(CPU_UNITS_PER_VCPU)
    }

    /// A new cluster when the account has `active` ACTIVE clusters.
    pub fn check_new_cluster(&self, active: u64) -> Result<(), DomainError> {
        if active >= self.clusters_per_account {
            return Err(exceeded(&format!(
                "an account can have at most {} clusters",
                self.clusters_per_account
            )));
        }
        Ok(())
    }

    /// A new service in a cluster that has `live` services not INACTIVE.
    pub fn check_new_service(&self, live: u64) -> Result<(), DomainError> {
        if live >= self.services_per_cluster {
            return Err(exceeded(&format!(
                "a cluster can have at most {} services",
                self.services_per_cluster
            )));
        }
        Ok(())
    }

    /// A service's desired count.
    pub fn check_desired_count(&self, desired: i64) -> Result<(), DomainError> {
        if u64::try_from(desired).is_ok_and(|d| d > self.tasks_per_service) {
            return Err(exceeded(&format!(
                "a service can have at most {} tasks (desiredCount {desired})",
                self.tasks_per_service
            )));
        }
        Ok(())
    }

    /// `new` more CPU units of tasks for an account whose tasks not STOPPED hold
    /// `used`.
    pub fn check_cpu(&self, used: u64, new: u64) -> Result<(), DomainError> {
        if used.saturating_add(new) > self.fargate_cpu_units() {
            return Err(DomainError::LimitExceeded(format!(
                "{VCPU_REASON} (the account's limit is {} vCPUs).",
                self.fargate_vcpus
            )));
        }
        Ok(())
    }

    /// Revision `revision` of a family.
    pub fn check_revision(&self, revision: u32) -> Result<(), DomainError> {
        if u64::from(revision) > self.revisions_per_family {
            return Err(exceeded(&format!(
                "a task definition family can have at most {} revisions",
                self.revisions_per_family
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let q = Quotas {
            clusters_per_account: 2,
            services_per_cluster: 1,
            tasks_per_service: 3,
            fargate_vcpus: 1,
            revisions_per_family: 2,
        };
        assert!(q.check_new_cluster(1).is_ok());
        assert!(q.check_new_cluster(2).is_err());
        assert!(q.check_new_service(0).is_ok());
        assert!(q.check_new_service(1).is_err());
        assert!(q.check_desired_count(3).is_ok());
        assert!(q.check_desired_count(4).is_err());
        assert!(q.check_cpu(512, 512).is_ok());
        let e = q.check_cpu(512, 513).unwrap_err().to_string();
        assert!(e.starts_with(VCPU_REASON), "{e}");
        assert!(q.check_revision(2).is_ok());
        assert!(q.check_revision(3).is_err());
        assert_eq!(Quotas::default().fargate_cpu_units(), 6 * 1024);
    }
}
