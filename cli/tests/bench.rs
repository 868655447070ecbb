//! `sealpipe bench`: a tiny run end to end (JSON, HTML report checked with
//! an XML parser against the JSON), `--compare` and `--plan`.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sealpipe");

/// A configuration that runs in well under a second of measuring.
const TINY: &[&str] = &["bench", "--modes", "ctr,cbc", "--memory-size", "64KiB", "--cache-size", "16KiB", "--seconds", "0.01", "--repeat", "2", "--max-threads", "2"];

fn sealpipe(args: &[&str], dir: &Path) -> (String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("SEALPIPE_KEYRING", dir.join("keyring.json"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run sealpipe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sealpipe {args:?} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

fn tiny_run(dir: &Path, extra: &[&str]) -> (Value, String) {
    let report = dir.join("bench.html");
    let d = dir.display().to_string();
    let r = report.display().to_string();
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend_from_slice(&["--dir", &d, "--json", "--report", &r]);
    args.extend_from_slice(extra);
    let (stdout, stderr) = sealpipe(&args, dir);
    std::fs::write(dir.join("bench.json"), &stdout).unwrap();
    (serde_json::from_str(stdout.trim()).expect("--json prints one JSON document"), stderr)
}

/// Parses the report with Python's XML parser and checks every mark and
/// number against the JSON; prints "ok" and the counts.
const CHECK_REPORT: &str = r#"
import json, sys, xml.etree.ElementTree as ET
html, js = sys.argv[1], sys.argv[2]
data = json.load(open(js))
root = ET.parse(html).getroot()
def tag(e): return e.tag.rsplit('}', 1)[-1]
rows = {r['id']: r for r in data.get('rows', []) + data.get('peers', [])}
embedded = [e for e in root.iter() if tag(e) == 'script' and e.get('id') == 'bench-json']
assert len(embedded) == 1, 'one embedded JSON'
assert embedded[0].get('type') == 'application/json'
assert json.loads(embedded[0].text) == data, 'embedded JSON differs from --json'
assert not [e for e in root.iter() if tag(e) == 'script' and e.get('type') != 'application/json'], 'no scripts'
for e in root.iter():
    for a in ('src', 'href'):
        assert not (e.get(a) or '').startswith(('http:', 'https:', '//')), 'nothing from the network'
seen = set(); points = cells = 0
for g in root.iter():
    if tag(g) != 'g' or g.get('class') != 'plot':
        continue
    y0, k, field = float(g.get('data-y0')), float(g.get('data-px-per-unit')), g.get('data-field')
    for e in g.iter():
        c = e.get('data-case')
        if c is None:
            continue
        assert c in rows, 'drawn case not in JSON: ' + c
        seen.add(c); r = rows[c]
        if tag(e) == 'circle':
            v = float(e.get('data-value'))
            want = r['gb_per_s']['median'] if field == 'gb_per_s' else r['efficiency']
            assert v == want, (c, field, v, want)
            assert abs(float(e.get('cy')) - (y0 - v * k)) < 0.011, (c, 'cy')
            points += 1
        elif e.get('class') == 'err':
            lo, hi = float(e.get('data-min')), float(e.get('data-max'))
            assert (lo, hi) == (r['gb_per_s']['min'], r['gb_per_s']['max']), (c, 'error bar')
            assert abs(float(e.get('y1')) - (y0 - lo * k)) < 0.011 and abs(float(e.get('y2')) - (y0 - hi * k)) < 0.011, (c, 'bar ends')
        elif e.get('class') == 'peer':
            v = float(e.get('data-value'))
            assert v == r['gb_per_s']['median'], (c, 'peer line')
            assert abs(float(e.get('y1')) - (y0 - v * k)) < 0.011
for e in root.iter():
    if tag(e) != 'td' or e.get('data-field') is None:
        continue
    c, f = e.get('data-case'), e.get('data-field')
    assert c in rows, c
    seen.add(c); r = rows[c]; text = e.text.strip()
    if f in ('median', 'min', 'max'):
        assert text == '%.2f' % r['gb_per_s'][f], (c, f, text)
    elif f == 'spread':
        assert text == '%.0f%%' % (r['spread'] * 100), (c, f, text)
    elif f == 'efficiency':
        assert text == '%.0f%%' % (r['efficiency'] * 100), (c, f, text)
    elif f == 'ratio_to_peer':
        assert text == '%.2f' % r['ratio_to_peer'], (c, f, text)
    else:
        raise AssertionError('unknown field ' + f)
    cells += 1
missing = set(rows) - seen
assert not missing, 'cases in the JSON but not in the report: %s' % sorted(missing)
memory = [i for i, r in rows.items() if r['scope'] == 'memory']
drawn = {e.get('data-case') for e in root.iter() if tag(e) == 'circle'}
assert set(memory) <= drawn, 'memory rows without a point: %s' % sorted(set(memory) - drawn)
print('ok', len(rows), points, cells)
"#;

fn check_report(html: &Path, json: &Path) -> String {
    let out = Command::new("python3").arg("-c").arg(CHECK_REPORT).arg(html).arg(json).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "report check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn rows(v: &Value) -> Vec<&Value> {
    v["rows"].as_array().unwrap().iter().collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_tiny_run_measures_every_case_and_its_report_matches_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let (v, stderr) = tiny_run(dir.path(), &["--file-size", "64KiB", "--no-peers"]);
    assert_eq!(v["schema"], "sealpipe-bench/1");
    assert!(v["command"].as_str().unwrap().contains("--repeat 2"), "{}", v["command"]);
    assert!(v["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["features"].is_object());
    let ids: Vec<&str> = rows(&v).iter().map(|r| r["id"].as_str().unwrap()).collect();
    for want in [
        "memory/cache/ctr-256/encrypt/one/1t",
        "memory/cache/ctr-256/decrypt/one/2t",
        "memory/large/ctr-256/encrypt/one/2t",
        "memory/large/cbc-256/encrypt/one/1t",
        "memory/large/cbc-256/encrypt/interleaved/2t",
        "memory/large/cbc-256/decrypt/one/2t",
        "file/warm/ctr-256/encrypt/one/1t",
        "file/warm/cbc-256/decrypt/one/2t",
        "file-synced/synced/ctr-256/encrypt/one/1t",
        "digest/large/sha256/hash/one/1t",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    // CBC encryption of one file runs on one thread only; interleaved batches say how many files.
    assert!(!ids.contains(&"memory/large/cbc-256/encrypt/one/2t"));
    for r in rows(&v) {
        let id = r["id"].as_str().unwrap();
        let samples: Vec<f64> = r["samples"].as_array().unwrap().iter().map(f).collect();
        assert_eq!(samples.len(), 2, "{id}: --repeat 2");
        let (med, lo, hi) = (f(&r["gb_per_s"]["median"]), f(&r["gb_per_s"]["min"]), f(&r["gb_per_s"]["max"]));
        // serde_json's default float parser may be one ulp off; Python's (the report check) is exact.
        assert!((med - (samples[0] + samples[1]) / 2.0).abs() <= 1e-12 * med, "{id}");
        assert_eq!((lo, hi), (samples[0].min(samples[1]), samples[0].max(samples[1])), "{id}");
        assert!(lo > 0.0, "{id}");
        assert!(!r["kernel"].as_str().unwrap().is_empty(), "{id}: kernel named");
        let layout = r["layout"].as_str().unwrap();
        let files = r["files"].as_u64().unwrap();
        assert_eq!(layout, if files == 1 { "one file".to_string() } else { format!("{files} files interleaved") }, "{id}");
        if id.contains("/interleaved/") {
            assert_eq!(files, 8 * r["threads"].as_u64().unwrap(), "{id}");
        }
        if r["threads"] == 1 {
            assert_eq!(f(&r["efficiency"]), 1.0, "{id}");
        }
        assert!(r["ratio_to_peer"].is_null(), "{id}: --no-peers");
    }
    // Progress on stderr: which case, how many left.
    let total = rows(&v).len() * 2;
    assert!(stderr.contains(&format!("case 1/{total} ({total} left")), "{stderr}");
    assert!(stderr.contains(&format!("case {total}/{total} (1 left")), "{stderr}");
    let checked = check_report(&dir.path().join("bench.html"), &dir.path().join("bench.json"));
    assert!(checked.starts_with("ok"), "{checked}");
}

#[test]
fn peers_run_in_the_same_rounds_and_every_row_has_its_ratio() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: no openssl on the PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let r = dir.path().join("bench.html").display().to_string();
    let (stdout, _) = sealpipe(
        &["bench", "--modes", "ctr", "--memory-size", "64KiB", "--file-size", "64KiB", "--seconds", "0.01", "--repeat", "1", "--max-threads", "2", "--dir", &d, "--json", "--report", &r],
        dir.path(),
    );
    std::fs::write(dir.path().join("bench.json"), &stdout).unwrap();
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let peers = v["peers"].as_array().unwrap();
    let peer = |id: &str| peers.iter().find(|p| p["id"] == id).unwrap_or_else(|| panic!("peer {id} missing: {peers:?}"));
    for r in rows(&v) {
        let id = r["id"].as_str().unwrap();
        let p = peer(r["peer"].as_str().unwrap_or_else(|| panic!("{id} has no peer")));
        let want = f(&r["gb_per_s"]["median"]) / f(&p["gb_per_s"]["median"]);
        assert!((f(&r["ratio_to_peer"]) - want).abs() < 1e-12, "{id}");
        let expected_peer = match r["scope"].as_str().unwrap() {
            // The 2-thread rows against `openssl speed -multi 2`.
            "memory" if r["threads"] == 2 => format!("openssl/ctr-256/{}/2t", r["direction"].as_str().unwrap()),
            "memory" => format!("openssl/ctr-256/{}", r["direction"].as_str().unwrap()),
            "digest" => "openssl/sha256/hash".into(),
            _ => format!("cp/{}", r["buffer"].as_str().unwrap()),
        };
        assert_eq!(r["peer"], expected_peer.as_str(), "{id}");
    }
    assert!(peer("openssl/ctr-256/encrypt")["kernel"].as_str().unwrap().starts_with("openssl speed"));
    assert_eq!(peer("openssl/ctr-256/encrypt/2t")["kernel"], "openssl speed -multi 2 -evp");
    assert_eq!(peer("openssl/ctr-256/encrypt/2t")["threads"], 2);
    check_report(&dir.path().join("bench.html"), &dir.path().join("bench.json"));
}

#[test]
fn compare_matches_rows_by_case() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = tiny_run(dir.path(), &["--file-size", "0", "--no-peers"]);
    // A second "machine": twice as fast everywhere, one case missing, one extra.
    let mut b = v.clone();
    let rows_b = b["rows"].as_array_mut().unwrap();
    let dropped = rows_b.remove(0)["id"].as_str().unwrap().to_string();
    for r in rows_b.iter_mut() {
        let m = f(&r["gb_per_s"]["median"]);
        r["gb_per_s"]["median"] = Value::from(m * 2.0);
    }
    rows_b.reverse();
    let mut extra = rows_b[0].clone();
    extra["id"] = Value::from("memory/large/ctr-256/encrypt/one/64t");
    rows_b.push(extra);
    let a_path = dir.path().join("a.json");
    let b_path = dir.path().join("b.json");
    std::fs::write(&a_path, serde_json::to_string(&v).unwrap()).unwrap();
    std::fs::write(&b_path, serde_json::to_string(&b).unwrap()).unwrap();
    let html = dir.path().join("cmp.html");
    let (stdout, _) = sealpipe(
        &["bench", "--compare", a_path.to_str().unwrap(), b_path.to_str().unwrap(), "--json", "--report", html.to_str().unwrap()],
        dir.path(),
    );
    let c: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(c["runs"].as_array().unwrap().len(), 2);
    let crow = |id: &str| c["rows"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} not compared")).clone();
    for r in rows(&v) {
        let id = r["id"].as_str().unwrap();
        let x = crow(id);
        assert_eq!(f(&x["medians"][0]), f(&r["gb_per_s"]["median"]), "{id}");
        if id == dropped {
            assert!(x["medians"][1].is_null() && x["ratios"][1].is_null(), "{id}");
        } else {
            assert!((f(&x["ratios"][1]) - 2.0).abs() < 1e-12, "{id}: {x}");
        }
    }
    let extra = crow("memory/large/ctr-256/encrypt/one/64t");
    assert!(extra["medians"][0].is_null() && !extra["medians"][1].is_null());
    // The HTML is well-formed and its cells match.
    let check = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot(); c = json.loads(sys.argv[2])
rows = {r['id']: r for r in c['rows']}
n = 0
for e in root.iter():
    f = e.get('data-field')
    if e.tag.endswith('td') and f:
        kind, i = f.split('-'); r = rows[e.get('data-case')]
        v = r['medians' if kind == 'median' else 'ratios'][int(i)]
        assert e.text == '%.2f' % v, (e.get('data-case'), f, e.text, v); n += 1
assert n > 0
print('ok', n)
"#;
    let out = Command::new("python3").arg("-c").arg(check).arg(&html).arg(stdout.trim()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plan_arithmetic_on_a_known_input() {
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _) = tiny_run(dir.path(), &["--file-size", "0", "--no-peers"]);
    // Known rates: CTR-256 in memory at 1 thread 2 GB/s, SHA-256 1 GB/s.
    for r in v["rows"].as_array_mut().unwrap() {
        let set = match r["id"].as_str().unwrap() {
            "memory/large/ctr-256/encrypt/one/1t" => 2.0,
            "digest/large/sha256/hash/one/1t" => 1.0,
            _ => continue,
        };
        r["gb_per_s"]["median"] = Value::from(set);
    }
    let path = dir.path().join("known.json");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    // 1 PB (10^15 B) in 10 million objects over 200 shards, 1 core and 25 Gbit/s each.
    let (stdout, _) = sealpipe(
        &["bench", "--plan", path.to_str().unwrap(), "--objects", "10000000", "--bytes", "1000000000000000", "--shards", "200", "--cores", "1", "--network-gbps", "25", "--json"],
        dir.path(),
    );
    let e: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(e["objects"], 50_000);
    assert_eq!(e["bytes"], 5_000_000_000_000u64);
    assert_eq!(e["object_bytes"], 100_000_000);
    let rate = |n: &str| f(&e["rates"].as_array().unwrap().iter().find(|r| r["name"] == n).unwrap()["gb_per_s"]);
    assert_eq!(rate("cipher"), 2.0);
    assert_eq!(rate("digest"), 1.0);
    assert_eq!(rate("network"), 3.125);
    assert_eq!(e["bottleneck"], "digest");
    assert!((f(&e["wall_seconds"]) - 5000.0).abs() < 1e-6);
    assert_eq!(e["data_keys"], 50_000);
    // --reuse-key: 1000 files (50), 64 GiB (ceil(5e12 / 68719476736) = 73) or 300 s (17) per key.
    assert_eq!(e["data_keys_reused"], 73);
    assert!((f(&e["fleet_kms_per_s"]) - 2000.0).abs() < 1e-6);
    assert!((f(&e["kms_quota_share"]) - 0.2).abs() < 1e-9);
    assert!((f(&e["fleet_kms_per_s_reused"]) - 73.0 * 200.0 / 5000.0).abs() < 1e-9);
    // 100 MB objects in 16 MiB parts: 6 parts each.
    assert_eq!(e["part_size"], 16u64 << 20);
    assert_eq!(e["s3_put"], 0);
    assert_eq!(e["s3_create_multipart"], 50_000);
    assert_eq!(e["s3_upload_part"], 300_000);
    assert_eq!(e["s3_complete_multipart"], 50_000);
    assert_eq!(e["s3_head"], 50_000);
    assert_eq!(e["s3_list_pages"], 10_000);
    // 4 MiB windows (1 core, uploads): 23 full windows of 4 GETs, and 4 for the last 3.5 MB.
    assert_eq!(e["s3_get"], 50_000 * 96);
    // One file in flight: 5 windows of 4 MiB + 8 parts of 16 MiB.
    assert_eq!(e["memory_bytes"], (5u64 * 4 + 8 * 16) << 20);
    assert_eq!(e["files_in_flight"], 1);

    // Issue 21: an HLS archive, 60,000 segments of 1 MB over 4 shards. Each
    // segment is read by one GetObject; no HeadObject, the destination
    // prefix (at most 60,000 outputs) being listed once per shard, as the source is.
    let (stdout, _) = sealpipe(
        &["bench", "--plan", path.to_str().unwrap(), "--objects", "60000", "--bytes", "60000000000", "--shards", "4", "--cores", "1", "--network-gbps", "25", "--json"],
        dir.path(),
    );
    let e: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(e["objects"], 15_000);
    assert_eq!(e["s3_put"], 15_000);
    assert_eq!(e["s3_get"], 15_000);
    assert_eq!(e["s3_head"], 0);
    assert_eq!((e["s3_list_pages"].as_u64(), e["s3_dest_list_pages"].as_u64()), (Some(60), Some(60)));
}

/// `--plan-inventory`: the archive's shape read from an S3 Inventory report
/// (manifest.json and its gzipped CSV files, written by Python's csv and gzip),
/// the same plan as --objects/--bytes with the listing's numbers, and without LISTs.
#[test]
fn plan_from_an_inventory_report() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = tiny_run(dir.path(), &["--file-size", "0", "--no-peers"]);
    let bench = dir.path().join("bench.json");
    let inv = dir.path().join("inv");
    std::fs::create_dir(&inv).unwrap();
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import csv, gzip, io, json, os, sys
d = sys.argv[1]
rows = [['archive', 'shows/%d.ts' % i, str(1000 * (i + 1)), 'e%d' % i, 'true', 'false'] for i in range(7)]
rows.append(['archive', 'shows/gone.ts', '5', 'x', 'true', 'true'])  # a delete marker: not an object
files = []
for n, part in enumerate([rows[:4], rows[4:]]):
    buf = io.StringIO(); csv.writer(buf, quoting=csv.QUOTE_ALL).writerows(part)
    data = gzip.compress(buf.getvalue().encode())
    open(os.path.join(d, 'part-%d.csv.gz' % n), 'wb').write(data)
    files.append({'key': 'archive/daily/data/part-%d.csv.gz' % n, 'size': len(data)})
json.dump({'sourceBucket': 'archive', 'destinationBucket': 'arn:aws:s3:::inv', 'fileFormat': 'CSV',
           'fileSchema': 'Bucket, Key, Size, ETag, IsLatest, IsDeleteMarker', 'files': files},
          open(os.path.join(d, 'manifest.json'), 'w'))
"#,
        )
        .arg(&inv)
        .status()
        .unwrap();
    assert!(made.success());
    let plan = |shape: &[&str]| -> Value {
        let mut args = vec!["bench", "--plan", bench.to_str().unwrap(), "--cores", "1", "--json"];
        args.extend_from_slice(shape);
        serde_json::from_str(sealpipe(&args, dir.path()).0.trim()).unwrap()
    };
    let manifest = inv.join("manifest.json");
    let from_report = plan(&["--plan-inventory", manifest.to_str().unwrap()]);
    assert_eq!((from_report["objects"].as_u64(), from_report["bytes"].as_u64()), (Some(7), Some(28_000)));
    assert_eq!(from_report["s3_list_pages"], 0, "an inventory replaces the listing");
    let given = plan(&["--objects", "7", "--bytes", "28000", "--from-inventory"]);
    assert_eq!(from_report, given);
    // The data files alone: without the manifest's schema, every row counts (the delete marker too).
    let parts = [inv.join("part-0.csv.gz"), inv.join("part-1.csv.gz")];
    let direct = plan(&["--plan-inventory", parts[0].to_str().unwrap(), parts[1].to_str().unwrap()]);
    assert_eq!((direct["objects"].as_u64(), direct["bytes"].as_u64()), (Some(8), Some(28_005)));
    // A data file cut short: one line naming it, exit 2.
    let data = std::fs::read(&parts[1]).unwrap();
    std::fs::write(&parts[1], &data[..data.len() - 3]).unwrap();
    let out = Command::new(BIN).args(["bench", "--plan", bench.to_str().unwrap(), "--plan-inventory", manifest.to_str().unwrap()]).env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("part-1.csv.gz") && err.contains("partial download") && err.lines().count() == 1, "{err}");
}

/// `--to s3://…` against moto: one row per part size × concurrency, and the
/// small objects' row (objects/s), in the JSON and the report; afterwards
/// no scratch object and no open upload.
#[test]
fn s3_rows_upload_through_the_store_and_leave_nothing() {
    let moto = common::start_moto();
    common::setup(&moto, "bench", "alias/bench");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.html");
    let d = dir.path().display().to_string();
    let mut cmd = common::sealpipe_command(
        &moto.url(),
        &["bench", "--modes", "gcm", "--memory-size", "64KiB", "--cache-size", "0", "--seconds", "0", "--repeat", "2", "--max-threads", "2",
          "--file-size", "6MiB", "--no-peers", "--dir", &d, "--to", "s3://bench/runs/", "--s3-part-sizes", "5MiB,6MiB", "--s3-concurrency", "1,3",
          "--s3-small-objects", "20", "--s3-small-size", "100KiB", "--max-concurrent-requests", "8",
          "--json", "--report", report.to_str().unwrap()],
    );
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let s3: Vec<&Value> = rows(&v).into_iter().filter(|r| r["scope"] == "s3").collect();
    let ids: Vec<&str> = s3.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s3/5MiBx1/gcm-256/encrypt/one/2t", "s3/5MiBx3/gcm-256/encrypt/one/2t", "s3/6MiBx1/gcm-256/encrypt/one/2t", "s3/6MiBx3/gcm-256/encrypt/one/2t"]);
    for r in &s3 {
        assert_eq!(r["samples"].as_array().unwrap().len(), 2);
        assert!(f(&r["gb_per_s"]["median"]) > 0.0, "{r}");
        assert_eq!(r["bytes"], 6u64 << 20);
    }
    // Issue 21: small objects, objects/s beside the GB/s of the large ones.
    let small: Vec<&Value> = rows(&v).into_iter().filter(|r| r["scope"] == "s3-small").collect();
    assert_eq!(small.len(), 1, "{small:?}");
    let r = small[0];
    assert_eq!(r["id"], "s3-small/100KiBx20/gcm-256/encrypt/8-in-flight/2t");
    assert_eq!((r["objects"].as_u64(), r["bytes"].as_u64()), (Some(20), Some(20 * 100 << 10)));
    assert_eq!(r["samples"].as_array().unwrap().len(), 2);
    let per_s = f(&r["objects_per_s"]);
    assert!((per_s - f(&r["gb_per_s"]["median"]) * 1e9 / (100 << 10) as f64).abs() < 1e-6 * per_s.max(1.0), "{r}");
    assert!(per_s > 0.0, "{r}");
    let json = dir.path().join("b.json");
    std::fs::write(&json, &stdout).unwrap();
    check_report(&report, &json);
    assert_eq!(common::py(&moto, "print(s3.list_objects_v2(Bucket='bench').get('KeyCount', 0))", &[]), "0", "the scratch object is deleted");
    assert_eq!(common::open_uploads(&moto, "bench"), 0);
    // Part sizes S3 refuses: one line, exit 2, before any upload.
    let mut cmd = common::sealpipe_command(&moto.url(), &["bench", "--file-size", "6MiB", "--to", "s3://bench/runs/", "--s3-part-sizes", "1MiB"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--s3-part-sizes"));
}

/// `SEALPIPE_KERNEL` forces the kernel of every mode (the bench rows name
/// the kernel that ran), and a kernel this CPU lacks, or a name that is no
/// kernel, is ignored with a warning that names it, while the calibrated
/// choice runs instead.
#[test]
fn the_environment_forces_a_kernel_or_says_why_not() {
    use sealpipe::cipher::{available_kernels, Kernel};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let args = [
        "bench", "--modes", "ctr,cbc,gcm", "--memory-size", "4KiB", "--cache-size", "0", "--file-size", "0", "--seconds", "0",
        "--repeat", "1", "--max-threads", "1", "--no-peers", "--json", "--dir", &d,
    ];
    let have = available_kernels();
    let names: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).chain(["no-such-kernel"]).collect();
    for name in names {
        let out = Command::new(BIN)
            .args(args)
            .env("SEALPIPE_KERNEL", name)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run sealpipe");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let memory: Vec<&Value> = rows(&v).into_iter().filter(|r| r["scope"] == "memory").collect();
        let kernels: Vec<&str> = memory.iter().map(|r| r["kernel"].as_str().unwrap()).collect();
        let cases: std::collections::BTreeSet<String> = memory.iter().map(|r| format!("{}/{}", r["mode"], r["direction"])).collect();
        assert_eq!(cases.len(), 6, "{name}: encrypt and decrypt of three modes: {cases:?}");
        let warned = v["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains(&format!("SEALPIPE_KERNEL={name} ignored")));
        let forced = Kernel::from_name(name).filter(|k| have.contains(k));
        match forced {
            Some(k) => {
                assert!(kernels.iter().all(|&r| r == k.name()), "{name} forced, rows ran {kernels:?}");
                assert!(!warned, "{name}: no warning for a kernel this CPU has");
            }
            None => {
                assert!(warned, "{name}: a kernel this CPU lacks (or no kernel) is named in a warning: {}", v["warnings"]);
                assert!(kernels.iter().all(|r| have.iter().any(|k| k.name() == *r)), "{name}: the calibrated choice runs: {kernels:?}");
            }
        }
    }
}
