//! Image pipeline benchmark: pull + unpack + ext4 build of the busybox test image from a
//! real local docker-registry, cold (empty layer cache) and cached. Prints figures; run
//! with `cargo bench -p hostagent --bench image_pipeline` (as root: the registry, umoci,
//! skopeo and mkfs.ext4 must be installed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use hostagent::image::{build_ext4_from_dir, ImageStore, StoreOptions, TASK_LAYER_STORAGE_BYTES};

const COLD_RUNS: usize = 5;
const CACHED_RUNS: usize = 10;

#[derive(Default)]
struct Phases {
    pull: Vec<Duration>,
    unpack: Vec<Duration>,
    ext4: Vec<Duration>,
    total: Vec<Duration>,
}

async fn once(store: &ImageStore, image: &str, work: &Path, p: &mut Phases) {
    let t0 = Instant::now();
    let img = store.pull(image, None).await.expect("pull");
    let t1 = Instant::now();
    let rootfs = work.join("rootfs");
    store.unpack(&img, &rootfs).await.expect("unpack");
    let t2 = Instant::now();
    let out = work.join("root.ext4");
    build_ext4_from_dir(&rootfs, &out, TASK_LAYER_STORAGE_BYTES)
        .await
        .expect("ext4");
    let t3 = Instant::now();
    std::fs::remove_dir_all(&rootfs).expect("cleanup");
    std::fs::remove_file(&out).expect("cleanup");
    p.pull.push(t1 - t0);
    p.unpack.push(t2 - t1);
    p.ext4.push(t3 - t2);
    p.total.push(t3 - t0);
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn report(name: &str, p: &mut Phases) {
    println!(
        "{name:<7} runs={:<3} median ms: pull={:>7.1} unpack={:>7.1} ext4={:>7.1} total={:>7.1}",
        p.total.len(),
        median_ms(&mut p.pull),
        median_ms(&mut p.unpack),
        median_ms(&mut p.ext4),
        median_ms(&mut p.total)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let t = tempfile::tempdir().expect("tempdir");
    let layout = common::busybox_layout(t.path());
    let reg = common::Registry::start(t.path());
    reg.push(&layout, "v1", "busybox", false);
    let image = format!("{}/busybox:v1", reg.addr);
    let work = t.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");

    // The test registry is on loopback: allowed explicitly, as an operator would.
    let opts = || StoreOptions {
        allowed_registries: vec!["127.0.0.1".parse().expect("allow entry")],
        ..StoreOptions::default()
    };
    let mut cold = Phases::default();
    for i in 0..COLD_RUNS {
        let store =
            ImageStore::open(t.path().join(format!("cache-cold-{i}")), opts()).expect("store");
        once(&store, &image, &work, &mut cold).await;
    }
    let store = ImageStore::open(t.path().join("cache-warm"), opts()).expect("store");
    once(&store, &image, &work, &mut Phases::default()).await; // fill the cache
    let mut cached = Phases::default();
    for _ in 0..CACHED_RUNS {
        once(&store, &image, &work, &mut cached).await;
    }
    let layers: u64 = store
        .pull(&image, None)
        .await
        .expect("pull")
        .layers
        .iter()
        .map(|l| l.size)
        .sum();
    println!("image {image}: busybox-static, 2 layers, {layers} bytes compressed");
    report("cold", &mut cold);
    report("cached", &mut cached);
    drop(reg);
}
