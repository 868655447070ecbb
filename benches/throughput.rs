//! Criterion throughput benches: one group per mode, a ladder of message
//! sizes (4 KiB … 64 MiB), with 1 thread and all threads, plus the one-pass
//! RustCrypto reference at 1 thread as a peer in the same run.
//!
//! `cargo bench -p sealpipe-engine` (add `-- ctr` to pick a group).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealpipe::cipher::{reference, Sealer, DEFAULT_CHUNK};
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

fn ctr(c: &mut Criterion) {
    bench_mode(c, Mode::Ctr)
}
fn cbc(c: &mut Criterion) {
    bench_mode(c, Mode::Cbc)
}
fn gcm(c: &mut Criterion) {
    bench_mode(c, Mode::Gcm)
}

criterion_group!(benches, ctr, cbc, gcm);
criterion_main!(benches);
