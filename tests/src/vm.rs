//! microVM configurations in the vmm's Firecracker-compatible formats, and the shell
//! snippets scenarios use to run them.

use crate::harness::Harness;
use serde_json::{json, Value};
use std::path::Path;

/// Kernel command line for the test guests. `reboot=k` reboots through the i8042
/// (the vmm exits), `panic=1` turns a guest panic into a reboot, the i8042 options skip
/// probing for a mouse and a multiplexer.
pub fn default_boot_args(kernel_origin: &str) -> String {
    let mut args =
        String::from("console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd");
    if kernel_origin == "debian-cloud" {
        // Debian's kernel probes PCI; these guests have none.
        args.push_str(" pci=off");
    }
    args
}

/// A block device of a microVM (Firecracker `drives` entry).
#[derive(Clone, Debug)]
pub struct Drive {
    pub id: String,
    pub path: String,
    pub root: bool,
    pub read_only: bool,
}

/// A microVM: boot source, machine configuration and drives.
#[derive(Clone, Debug)]
pub struct VmConfig {
    pub kernel: String,
    pub boot_args: String,
    pub initrd: Option<String>,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub drives: Vec<Drive>,
    /// Extra vmm flags of [`VmConfig::script_run_config_file`].
    pub vmm_flags: Vec<String>,
}

impl VmConfig {
    /// The payload's guest kernel and busybox initramfs, 1 vCPU, 256 MiB, the default
    /// kernel command line plus `guest.action=<action>` (see `tests/guest/init`).
    pub fn new(harness: &Harness, action: &str) -> VmConfig {
        let guest = harness.payload().join("guest");
        VmConfig {
            kernel: path_str(&guest.join("vmlinux")),
            boot_args: format!(
                "{} guest.action={action}",
                default_boot_args(&harness.kernel_origin())
            ),
            initrd: Some(path_str(&guest.join("initramfs.cpio.gz"))),
            vcpus: 1,
            mem_mib: 256,
            drives: Vec::new(),
            vmm_flags: Vec::new(),
        }
    }

    /// Passes `flag` (one shell word) to the vmm.
    pub fn vmm_flag(mut self, flag: &str) -> Self {
        self.vmm_flags.push(flag.to_string());
        self
    }

    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }

    pub fn mem_mib(mut self, mib: u32) -> Self {
        self.mem_mib = mib;
        self
    }

    pub fn kernel(mut self, path: &str) -> Self {
        self.kernel = path.to_string();
        self
    }

    pub fn no_initrd(mut self) -> Self {
        self.initrd = None;
        self
    }

    /// Appends to the kernel command line.
    pub fn boot_arg(mut self, arg: &str) -> Self {
        self.boot_args.push(' ');
        self.boot_args.push_str(arg);
        self
    }

    /// Replaces the kernel command line.
    pub fn boot_args(mut self, args: &str) -> Self {
        self.boot_args = args.to_string();
        self
    }

    pub fn drive(mut self, drive: Drive) -> Self {
        self.drives.push(drive);
        self
    }

    /// `PUT /boot-source` body.
    pub fn boot_source(&self) -> Value {
        let mut v = json!({
            "kernel_image_path": self.kernel,
            "boot_args": self.boot_args,
        });
        if let Some(initrd) = &self.initrd {
            v["initrd_path"] = json!(initrd);
        }
        v
    }

    /// `PUT /machine-config` body.
    pub fn machine_config(&self) -> Value {
        json!({ "vcpu_count": self.vcpus, "mem_size_mib": self.mem_mib })
    }

    /// `PUT /drives/{id}` bodies.
    pub fn drive_bodies(&self) -> Vec<Value> {
        self.drives
            .iter()
            .map(|d| {
                json!({
                    "drive_id": d.id,
                    "path_on_host": d.path,
                    "is_root_device": d.root,
                    "is_read_only": d.read_only,
                })
            })
            .collect()
    }

    /// The Firecracker config file (`vmm --no-api --config-file`).
    pub fn config_file(&self) -> Value {
        json!({
            "boot-source": self.boot_source(),
            "machine-config": self.machine_config(),
            "drives": self.drive_bodies(),
        })
    }

    /// Shell: writes the config file to `file`, runs the vmm on it (at most `secs`
    /// seconds, log level Info), prints `vmm exit status: N` and exits with N.
    pub fn script_run_config_file(&self, file: &str, secs: u64) -> String {
        format!(
            "{}\ntimeout -s KILL {secs} vmm --no-api --config-file {file} --level Info{} 2>&1\n\
             status=$?\necho \"vmm exit status: $status\"\nexit $status\n",
            write_file(file, &self.config_file()),
            self.vmm_flags
                .iter()
                .map(|f| format!(" {f}"))
                .collect::<String>()
        )
    }
}

/// Shell: writes `value` as JSON into `file`. No shell expansion happens in it, except
/// that `@SCRATCH@` becomes the scenario's scratch directory (for files it creates).
pub fn write_file(file: &str, value: &Value) -> String {
    format!(
        "cat >{file} <<'__KVM_TESTS_EOF__'\n{value}\n__KVM_TESTS_EOF__\n\
         sed -i \"s|@SCRATCH@|$SCRATCH|g\" {file}"
    )
}

/// A JSON value as a single-quoted shell word.
pub fn shell_quote(value: &Value) -> String {
    format!("'{}'", value.to_string().replace('\'', "'\\''"))
}

/// Shell functions for talking to a vmm API socket with curl:
/// `api METHOD PATH [JSON]` prints the HTTP status and the body and fails unless 2xx;
/// `wait_for FILE TEXT SECS [PID]` waits until FILE contains TEXT (giving up early
/// once process PID, if given, has ended).
pub const SHELL_HELPERS: &str = r#"
api() {
    _code=$(curl -sS --unix-socket "$API_SOCK" -o api.body -w '%{http_code}' -X "$1" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} "http://localhost$2")
    echo "api $1 $2 -> $_code $(cat api.body 2>/dev/null)"
    case $_code in 2*) return 0 ;; *) return 1 ;; esac
}
wait_for() {
    _i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        _i=$((_i + 1))
        [ $_i -gt $(($3 * 10)) ] && { echo "timed out waiting for '$2' in $1"; return 1; }
        if [ -n "$4" ] && ! kill -0 "$4" 2>/dev/null; then
            grep -q "$2" "$1" 2>/dev/null && return 0
            echo "process $4 ended before '$2' appeared in $1"; return 1
        fi
        sleep 0.1
    done
}
"#;

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Whether the tests that need vmm capability `feature` are enabled. The capabilities
/// are listed, separated by spaces or commas, in `KVM_TESTS_ENABLE` (run-tests sets it;
/// `all` enables everything): `linux-boot` (boot Linux to init, Ctrl+Alt+Del, bad
/// kernels), `smp` (several vCPUs, needs the MP table), `virtio-blk` (root drive).
/// Tests for capabilities the vmm does not have yet are kept, and skipped.
pub fn enabled(feature: &str) -> bool {
    feature_listed(
        &std::env::var("KVM_TESTS_ENABLE").unwrap_or_default(),
        feature,
    )
}

fn feature_listed(list: &str, feature: &str) -> bool {
    list.split([' ', ',']).any(|f| f == feature || f == "all")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            kernel: "/p/guest/vmlinux".into(),
            boot_args: "console=ttyS0".into(),
            initrd: Some("/p/guest/initramfs.cpio.gz".into()),
            vcpus: 2,
            mem_mib: 256,
            drives: vec![],
            vmm_flags: vec![],
        }
    }

    #[test]
    fn config_file_has_firecracker_shape() {
        let c = config().drive(Drive {
            id: "rootfs".into(),
            path: "/s/root.ext4".into(),
            root: true,
            read_only: false,
        });
        let v = c.config_file();
        assert_eq!(v["boot-source"]["kernel_image_path"], "/p/guest/vmlinux");
        assert_eq!(
            v["boot-source"]["initrd_path"],
            "/p/guest/initramfs.cpio.gz"
        );
        assert_eq!(v["machine-config"]["vcpu_count"], 2);
        assert_eq!(v["machine-config"]["mem_size_mib"], 256);
        assert_eq!(v["drives"][0]["drive_id"], "rootfs");
        assert_eq!(v["drives"][0]["is_root_device"], true);
        let no_initrd = config().no_initrd().boot_source();
        assert!(no_initrd.get("initrd_path").is_none());
    }

    #[test]
    fn the_script_writes_the_config_and_reports_the_status() {
        let s = config().script_run_config_file("vm.json", 60);
        assert!(s.contains("cat >vm.json <<'__KVM_TESTS_EOF__'\n{"));
        assert!(s.contains("timeout -s KILL 60 vmm --no-api --config-file vm.json"));
        assert!(s.ends_with("exit $status\n"));
        let s = config()
            .vmm_flag("--serial-out-limit 10")
            .script_run_config_file("vm.json", 60);
        assert!(s.contains("--level Info --serial-out-limit 10 2>&1"), "{s}");
    }

    #[test]
    fn features_are_enabled_by_name_or_all() {
        assert!(feature_listed("linux-boot smp", "smp"));
        assert!(feature_listed("linux-boot,smp", "linux-boot"));
        assert!(feature_listed("all", "virtio-blk"));
        assert!(!feature_listed("linux-boot", "smp"));
        assert!(!feature_listed("", "linux-boot"));
        assert!(!feature_listed("smp-x", "smp"));
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote(&json!("it's")), r#"'"it'\''s"'"#);
    }
}
