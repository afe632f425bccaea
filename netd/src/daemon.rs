//! The daemon's core: tasks' ENIs, security groups, IPAM and reconciliation, all behind one
//! lock so every mutation is: validate -> persist -> kernel -> nft (one transaction), with a
//! roll back of what was created when a step fails.
//!
//! Whatever removes an ENI (delete, the roll back of a failed create, the clean-up of stale
//! ENIs at start) also flushes the conntrack entries of its addresses once its links are
//! gone, so an address handed out again starts with no flows of the dead task.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{invalid, Error, Result};
use crate::model::{
    validate_group, validate_name, CreateTaskRequest, Eni, SecurityGroup, SecurityGroupSpec, State,
    Task,
};
use crate::nft::Tx;
use crate::{conntrack, ipam, link, netns, state};

/// The running daemon.
pub struct Netd {
    cfg: Config,
    host: rtnetlink::Handle,
    state: Mutex<State>,
}

impl Netd {
    /// Loads state, reconciles it with the kernel and returns the daemon.
    pub async fn start(cfg: Config) -> Result<Arc<Netd>> {
        conntrack::check().await?;
        let (conn, host, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let st = state::load(&cfg.state_file)?;
        let d = Netd {
            cfg,
            host,
            state: Mutex::new(st),
        };
        d.reconcile().await?;
        Ok(Arc::new(d))
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn ns_name(&self, task_id: &str) -> String {
        format!("{}{}", self.cfg.netns_prefix, task_id)
    }

    fn owned_veth(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.cfg.ifname_prefix) else {
            return false;
        };
        let rest = rest.strip_suffix('p').unwrap_or(rest);
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    /// Makes the kernel match the persisted state: re-creates what is missing (touching
    /// nothing that is intact), deletes orphans, and re-applies the whole nft table atomically.
    async fn reconcile(&self) -> Result<()> {
        let st = self.state.lock().await;
        link::enable_forwarding()?;
        for s in &self.cfg.subnets {
            link::ensure_gateway(
                &self.host,
                &self.cfg.gateway_ifname(&s.name),
                s.gateway,
                s.cidr,
            )
            .await?;
        }
        let mut keep_ns = HashSet::new();
        let mut keep_if = HashSet::new();
        for t in st.tasks.values() {
            keep_ns.insert(t.netns.clone());
            netns::create(&t.netns)?;
            for eni in &t.enis {
                keep_if.insert(eni.host_if.clone());
                let owner = (t.request.tap_uid, t.request.tap_gid);
                if let Err(e) = link::ensure_eni(&self.host, &t.netns, eni, owner).await {
                    warn!(task = %t.task_id, eni = %eni.id, "repairing ENI failed: {e}");
                }
            }
        }
        for ns in netns::list(&self.cfg.netns_prefix) {
            if !keep_ns.contains(&ns) {
                info!(netns = %ns, "deleting orphan namespace");
                netns::delete(&ns)?;
            }
        }
        for name in link::names(&self.host).await? {
            let base = name.strip_suffix('p').unwrap_or(&name);
            if self.owned_veth(&name) && !keep_if.contains(base) {
                info!(link = %name, "deleting orphan veth");
                // Its routed /32 is the stale ENI's address: learn it before the route goes.
                let addrs = link::routed_addresses(&self.host, &name).await?;
                link::delete(&self.host, &name).await?;
                let flows = conntrack::flush(&addrs).await?;
                info!(link = %name, ?addrs, flows, "flushed the orphan's conntrack entries");
            }
        }
        Tx::full(&self.cfg, &st).apply().await?;
        info!(
            tasks = st.tasks.len(),
            groups = st.security_groups.len(),
            "reconciled"
        );
        Ok(())
    }

    /// Creates a task's ENIs; idempotent: the same request again returns the existing task
    /// (`false` = it already existed). A different request for an existing task is a conflict.
    pub async fn create_task(&self, task_id: &str, req: CreateTaskRequest) -> Result<(bool, Task)> {
        validate_name("task id", task_id)?;
        if req.enis.is_empty() || req.enis.len() > 2 {
            return invalid("a task has one primary ENI and at most one secondary ENI");
        }
        let mut st = self.state.lock().await;
        if let Some(t) = st.tasks.get(task_id) {
            if t.request == req {
                return Ok((false, t.clone()));
            }
            return Err(Error::Conflict(format!(
                "task {task_id} already exists with different ENIs; delete it first"
            )));
        }
        let mut used_ips: HashSet<Ipv4Addr> = HashSet::new();
        let mut used_macs = HashSet::new();
        let mut used_ids = HashSet::new();
        let mut used_public = HashSet::new();
        for e in st.tasks.values().flat_map(|t| &t.enis) {
            used_ips.insert(e.ip);
            used_macs.insert(e.mac.clone());
            used_ids.insert(e.id.clone());
            used_public.extend(e.public_ip);
        }
        let mut enis = Vec::new();
        let mut cursors = st.cursors.clone();
        for (i, r) in req.enis.iter().enumerate() {
            let subnet = self
                .cfg
                .subnet(&r.subnet)
                .ok_or_else(|| Error::Invalid(format!("unknown subnet {:?}", r.subnet)))?;
            if enis.iter().any(|e: &Eni| e.subnet == r.subnet) {
                return invalid("primary and secondary ENI must be on different subnets");
            }
            for g in &r.security_groups {
                if !st.security_groups.contains_key(g) {
                    return invalid(format!("unknown security group {g:?}"));
                }
            }
            let mut groups = r.security_groups.clone();
            groups.sort();
            groups.dedup();
            if let Some(p) = r.public_ip {
                if !used_public.insert(p) {
                    return Err(Error::Conflict(format!("public IP {p} is already mapped")));
                }
            }
            let cursor = cursors.get(&subnet.name).copied().unwrap_or(0);
            let (ip, cursor) = ipam::allocate(subnet, &used_ips, cursor)?;
            cursors.insert(subnet.name.clone(), cursor);
            used_ips.insert(ip);
            let mac = ipam::random_mac(&used_macs)?;
            used_macs.insert(mac.clone());
            let hex = loop {
                let b: [u8; 4] = ipam::random_bytes()?;
                let h = format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3]);
                if used_ids.insert(format!("eni-{h}")) {
                    break h;
                }
            };
            enis.push(Eni {
                id: format!("eni-{hex}"),
                index: i as u8,
                subnet: subnet.name.clone(),
                tap: format!("tap{i}"),
                mac,
                ip,
                prefix_len: subnet.cidr.prefix_len(),
                gateway: subnet.gateway,
                dns: subnet.dns.clone(),
                security_groups: groups,
                public_ip: r.public_ip,
                host_if: format!("{}{hex}", self.cfg.ifname_prefix),
            });
        }
        let netns = self.ns_name(task_id);
        let task = Task {
            task_id: task_id.to_string(),
            netns_path: netns::path(&netns).to_string_lossy().into_owned(),
            netns,
            enis,
            request: req,
        };
        // Persist first: after a crash, the restart finishes (or the client deletes) the task,
        // and its addresses are never handed out twice.
        let prev_cursors = std::mem::replace(&mut st.cursors, cursors);
        st.tasks.insert(task_id.to_string(), task.clone());
        if let Err(e) = state::save(&self.cfg.state_file, &st) {
            st.tasks.remove(task_id);
            st.cursors = prev_cursors;
            return Err(e);
        }
        if let Err(e) = self.build_task(&task).await {
            warn!(task = %task_id, "creating ENIs failed, rolling back: {e}");
            self.teardown(&task).await;
            if let Err(ce) = forget_flows(&task).await {
                warn!(task = %task_id, "rolling back: {ce}");
            }
            st.tasks.remove(task_id);
            if let Err(se) = state::save(&self.cfg.state_file, &st) {
                warn!("saving state after roll back: {se}");
            }
            return Err(e);
        }
        info!(task = %task_id, enis = task.enis.len(), "task network created");
        Ok((true, task))
    }

    async fn build_task(&self, task: &Task) -> Result<()> {
        netns::create(&task.netns)?;
        let owner = (task.request.tap_uid, task.request.tap_gid);
        for eni in &task.enis {
            link::ensure_eni(&self.host, &task.netns, eni, owner).await?;
        }
        let mut tx = Tx::new(&self.cfg.nft_table);
        for eni in &task.enis {
            tx.add_eni(eni);
        }
        tx.apply().await
    }

    /// Removes the links and the namespace of a task's ENIs (everything else an ENI has
    /// lives on them: the tap and bridge in the namespace, the /32 route and sysctls on the
    /// host veth). Failures are logged; a restart's reconciliation removes what is left.
    async fn teardown(&self, task: &Task) {
        for eni in &task.enis {
            if let Err(e) = link::remove_eni(&self.host, eni).await {
                warn!(eni = %eni.id, "removing veth: {e}");
            }
        }
        if let Err(e) = netns::delete(&task.netns) {
            warn!(netns = %task.netns, "removing namespace: {e}");
        }
    }

    /// Deletes a task's ENIs, rules and namespace, flushes their flows and releases their
    /// addresses.
    pub async fn delete_task(&self, task_id: &str) -> Result<()> {
        let mut st = self.state.lock().await;
        let task = st
            .tasks
            .get(task_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {task_id:?} not found")))?;
        let mut tx = Tx::new(&self.cfg.nft_table);
        for eni in &task.enis {
            tx.delete_eni(eni);
        }
        if let Err(e) = tx.apply().await {
            warn!(task = %task_id, "incremental rule removal failed ({e}); rebuilding table");
            let mut rest = st.clone();
            rest.tasks.remove(task_id);
            Tx::full(&self.cfg, &rest).apply().await?;
        }
        self.teardown(&task).await;
        // Until the flush worked the task keeps its addresses (a retried delete flushes
        // again): a reused address must not inherit this task's flows.
        forget_flows(&task).await?;
        st.tasks.remove(task_id);
        state::save(&self.cfg.state_file, &st)?;
        info!(task = %task_id, "task network deleted");
        Ok(())
    }

    /// One task.
    pub async fn task(&self, task_id: &str) -> Result<Task> {
        let st = self.state.lock().await;
        st.tasks
            .get(task_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {task_id:?} not found")))
    }

    /// All tasks.
    pub async fn tasks(&self) -> Vec<Task> {
        self.state.lock().await.tasks.values().cloned().collect()
    }

    /// Replaces the security groups of a task's ENI, live.
    pub async fn set_groups(
        &self,
        task_id: &str,
        index: usize,
        groups: Vec<String>,
    ) -> Result<Eni> {
        let mut st = self.state.lock().await;
        for g in &groups {
            if !st.security_groups.contains_key(g) {
                return invalid(format!("unknown security group {g:?}"));
            }
        }
        let mut groups = groups;
        groups.sort();
        groups.dedup();
        let task = st
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| Error::NotFound(format!("task {task_id:?} not found")))?;
        let eni = task
            .enis
            .get_mut(index)
            .ok_or_else(|| Error::NotFound(format!("task {task_id:?} has no ENI {index}")))?;
        let old = std::mem::replace(&mut eni.security_groups, groups);
        let mut tx = Tx::new(&self.cfg.nft_table);
        tx.set_eni_groups(eni, &old);
        if let Err(e) = tx.apply().await {
            eni.security_groups = old;
            return Err(e);
        }
        let eni = eni.clone();
        state::save(&self.cfg.state_file, &st)?;
        Ok(eni)
    }

    /// Creates or replaces a security group (`true` = created).
    pub async fn put_group(
        &self,
        name: &str,
        spec: SecurityGroupSpec,
    ) -> Result<(bool, SecurityGroup)> {
        let mut st = self.state.lock().await;
        validate_group(name, &spec, |g| st.security_groups.contains_key(g))?;
        let sg = SecurityGroup {
            name: name.to_string(),
            spec,
        };
        let created = !st.security_groups.contains_key(name);
        let mut tx = Tx::new(&self.cfg.nft_table);
        if created {
            tx.add_group(&sg);
        } else {
            tx.update_group(&sg);
        }
        tx.apply().await?;
        st.security_groups.insert(name.to_string(), sg.clone());
        state::save(&self.cfg.state_file, &st)?;
        Ok((created, sg))
    }

    /// Deletes a security group that no ENI and no other group's rule uses.
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        let mut st = self.state.lock().await;
        if !st.security_groups.contains_key(name) {
            return Err(Error::NotFound(format!(
                "security group {name:?} not found"
            )));
        }
        let eni_user = st
            .tasks
            .values()
            .flat_map(|t| &t.enis)
            .find(|e| e.security_groups.iter().any(|g| g == name));
        if let Some(e) = eni_user {
            return Err(Error::Conflict(format!(
                "security group {name:?} is used by {}",
                e.id
            )));
        }
        let referrer = st
            .security_groups
            .values()
            .find(|g| g.name != name && g.referenced_groups().any(|r| r == name));
        if let Some(g) = referrer {
            return Err(Error::Conflict(format!(
                "security group {name:?} is referenced by group {:?}",
                g.name
            )));
        }
        let mut tx = Tx::new(&self.cfg.nft_table);
        tx.delete_group(name);
        tx.apply().await?;
        st.security_groups.remove(name);
        state::save(&self.cfg.state_file, &st)?;
        Ok(())
    }

    /// One group.
    pub async fn group(&self, name: &str) -> Result<SecurityGroup> {
        let st = self.state.lock().await;
        st.security_groups
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("security group {name:?} not found")))
    }

    /// All groups.
    pub async fn groups(&self) -> Vec<SecurityGroup> {
        self.state
            .lock()
            .await
            .security_groups
            .values()
            .cloned()
            .collect()
    }
}

/// Flushes the conntrack entries of every address of `task`'s ENIs (private and public).
async fn forget_flows(task: &Task) -> Result<()> {
    let addrs: Vec<Ipv4Addr> = task
        .enis
        .iter()
        .flat_map(|e| std::iter::once(e.ip).chain(e.public_ip))
        .collect();
    let flows = conntrack::flush(&addrs).await?;
    info!(task = %task.task_id, ?addrs, flows, "flushed conntrack entries");
    Ok(())
}
