//! Criterion throughput benches: one group per mode, a ladder of message
//! sizes (4 KiB … 64 MiB), with 1 thread and all threads, plus the one-pass
//! RustCrypto reference at 1 thread as a peer in the same run; and one group
//! per kernel the CPU has (`kernel-<name>`), 1 thread, 16 MiB,
//! encrypt and decrypt, to set beside `openssl speed -evp` (scripts/bench-peers.sh).
//!
//! `cargo bench -p sealpipe-benches` (add `-- ctr` to pick a group, `-- kernel-`
//! for the kernels).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealpipe::cipher::{available_kernels, kernel_name, reference, with_kernel, Opener, Sealer, DEFAULT_CHUNK};
use sealpipe::keys::DataKey;
use sealpipe::format::{Iv, Mode};
use std::time::Duration;

const SIZES: [usize; 5] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];

fn bench_mode(c: &mut Criterion, mode: Mode) {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key_bytes = [0x42u8; 32];
    let key = DataKey::from_slice(&key_bytes).unwrap();
    let iv = [0x24u8; 16];
    let input: Vec<u8> = (0..*SIZES.last().unwrap()).map(|i| (i * 7 + 3) as u8).collect();
    // Buffers allocated once, outside the timed loop.
    let mut output = vec![0u8; input.len()];

    let mut group = c.benchmark_group(mode.to_string());
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for &size in &SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let threads: Vec<usize> = if all > 1 { vec![1, all] } else { vec![1] };
        for &t in &threads {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            group.bench_with_input(BenchmarkId::new(format!("sealpipe-{t}t"), size), &size, |b, &size| {
                pool.install(|| {
                    b.iter(|| {
                        let mut s = Sealer::new(mode, &key, Iv::from_slice(&iv).unwrap(), DEFAULT_CHUNK);
                        s.update(&input[..size], &mut output[..size]);
                    })
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("reference-1t", size), &size, |b, &size| {
            b.iter(|| match mode {
                Mode::Ctr => reference::ctr(&key_bytes, &iv, &input[..size]),
                Mode::Cbc => reference::cbc_encrypt(&key_bytes, &iv, &input[..size]),
                Mode::Gcm => reference::gcm_encrypt(&key_bytes, &iv, &input[..size]),
            })
        });
    }
    group.finish();
}

/// On-CPU time of the calling thread (Linux `/proc/thread-self/schedstat`),
/// or wall time where that is unavailable.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Time `f` in this thread's CPU time: `openssl speed` divides by user CPU
/// time by default, so on a shared, loaded machine the ratio stays fair.
fn cpu_time(f: impl FnOnce()) -> Duration {
    let (c0, w0) = (thread_cpu_ns(), std::time::Instant::now());
    f();
    match (c0, thread_cpu_ns()) {
        (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a).max(1)),
        _ => w0.elapsed(),
    }
}

/// Each kernel alone, one thread, 16 MiB in memory, both directions, timed
/// in the worker thread's CPU time (see [`cpu_time`]).
fn kernels(c: &mut Criterion) {
    const SIZE: usize = 16 << 20;
    let key = DataKey::from_slice(&[0x42u8; 32]).unwrap();
    let iv_bytes = [0x24u8; 16];
    let iv = Iv::from_slice(&iv_bytes).unwrap();
    let input: Vec<u8> = (0..SIZE).map(|i| (i * 7 + 3) as u8).collect();
    let mut output = vec![0u8; SIZE];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("dispatch picks: ctr={} gcm={} cbc={}", kernel_name(Mode::Ctr), kernel_name(Mode::Gcm), kernel_name(Mode::Cbc));
    for kernel in available_kernels() {
        let mut group = c.benchmark_group(format!("kernel-{}", kernel.name()));
        group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        // 16 MiB (the target's size) and 16 KiB (openssl speed's, cache-resident).
        for (size, tag) in [(SIZE, ""), (16 << 10, "-16k")] {
            group.throughput(Throughput::Bytes(size as u64));
            for mode in Mode::ALL {
                group.bench_function(format!("{mode}-seal-1t{tag}"), |b| {
                    pool.install(|| {
                        with_kernel(kernel, || {
                            b.iter_custom(|iters| {
                                cpu_time(|| {
                                    for _ in 0..iters {
                                        let mut s = Sealer::new(mode, &key, Iv::from_slice(&iv_bytes).unwrap(), DEFAULT_CHUNK);
                                        s.update(&input[..size], &mut output[..size]);
                                    }
                                })
                            })
                        })
                    })
                });
                group.bench_function(format!("{mode}-open-1t{tag}"), |b| {
                    pool.install(|| {
                        with_kernel(kernel, || {
                            b.iter_custom(|iters| {
                                cpu_time(|| {
                                    for _ in 0..iters {
                                        let mut o = Opener::new(mode, &key, &iv, DEFAULT_CHUNK);
                                        o.update(&input[..size], &mut output[..size]);
                                    }
                                })
                            })
                        })
                    })
                });
            }
        }
        group.finish();
    }
}

fn ctr(c: &mut Criterion) {
    bench_mode(c, Mode::Ctr)
}
fn cbc(c: &mut Criterion) {
    bench_mode(c, Mode::Cbc)
}
fn gcm(c: &mut Criterion) {
    bench_mode(c, Mode::Gcm)
}

criterion_group!(benches, ctr, cbc, gcm, kernels);
criterion_main!(benches);
