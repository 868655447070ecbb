//! `sealpipe merge-manifests`: join the manifests of sharded runs into one
//! and report duplicates and gaps (text on stderr, or one JSON object on stdout).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{anyhow, bail};

use sealpipe::{Duplicate, DuplicateKind, merge, MergeReport, Named, read_list};

use crate::args::manifests::MergeArgs;

/// How many duplicates, and how many gaps, the text report lists before "... and N more".
const SHOWN: usize = 20;

/// Expected source names queued between the list reader and the merge.
const EXPECTED_QUEUE: usize = 4096;

/// Merge, print the report, and exit 0 when there are no duplicates and no gaps, 1 otherwise.
pub fn run(a: MergeArgs, json: bool) -> anyhow::Result<ExitCode> {
    for path in a.manifests.iter().chain(&a.out).chain(&a.expect_list) {
        if crate::aws::is_url(path) {
            bail!("{}: merge-manifests works on local files; copy it here first (aws s3 cp)", path.display());
        }
    }
    let report = match &a.expect_list {
        Some(list) => {
            // Read once to check it, so a bad line stops the merge before anything is written.
            read_list(open_list(list)?, list, &mut |_| Ok(()))?;
            with_expected(list, |expected| merge(&a.manifests, a.out.as_deref(), a.force, Some(expected)))?
        }
        None => merge(&a.manifests, a.out.as_deref(), a.force, None)?,
    };
    if json {
        let mut v = serde_json::json!({"command": "merge-manifests", "out": a.out});
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), serde_json::to_value(&report)?) {
            obj.extend(more);
        }
        outln!("{v}");
    } else {
        print_text(&report, a.out.as_deref());
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn open_list(list: &Path) -> anyhow::Result<BufReader<File>> {
    let file = File::open(list).map_err(|e| anyhow!("{}: cannot open the --expect-list file: {e}", list.display()))?;
    Ok(BufReader::new(file))
}

/// Run `f` over the names of a list file, read on a second thread as `f`
/// consumes them (memory does not grow with the list). Local paths are
/// resolved as `encrypt` records them; s3:// URLs are kept as written.
fn with_expected<T>(list: &Path, f: impl FnOnce(&mut dyn Iterator<Item = String>) -> sealpipe::Result<T>) -> anyhow::Result<T> {
    let reader = open_list(list)?;
    let (tx, rx) = mpsc::sync_channel::<String>(EXPECTED_QUEUE);
    let origin = list.to_path_buf();
    let producer = std::thread::spawn(move || {
        read_list(reader, &origin, &mut |n: Named| {
            let name = if sealpipe::Stores::is_url(&n.name) { n.name } else { sealpipe::resolve_local(Path::new(&n.name)).display().to_string() };
            // The merge stopped early (and reports why): stop reading.
            tx.send(name).map_err(|_| sealpipe::Error::Usage("merge stopped".into()))
        })
    });
    let mut names = rx.into_iter();
    let result = f(&mut names);
    drop(names);
    let listed = producer.join().map_err(|_| anyhow!("{}: the list reader panicked", list.display()))?;
    let value = result?;
    listed?;
    Ok(value)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_text(r: &MergeReport, out: Option<&Path>) {
    let read = if r.records_read == r.records_written { String::new() } else { format!(" ({} read)", r.records_read) };
    errln!(
        "sealpipe: merged {}: {}{read}, {}, {}",
        plural(r.manifests as u64, "manifest", "manifests"),
        plural(r.records_written, "record", "records"),
        plural(r.duplicates.len() as u64, "duplicate", "duplicates"),
        plural(r.gaps.len() as u64, "gap", "gaps"),
    );
    print_some(r.duplicates.iter().map(describe));
    print_some(r.gaps.iter().map(|g| format!("gap: {g}")));
    if let Some(out) = out {
        errln!("sealpipe: merged manifest: {}", out.display());
    }
}

fn describe(d: &Duplicate) -> String {
    let places = d.places.join(", ");
    match (d.kind, &d.kept) {
        (DuplicateKind::Source, Some(kept)) => format!("duplicate source {}: {places} (kept {kept})", d.name),
        (DuplicateKind::Source, None) => format!("duplicate source {}: {places}", d.name),
        (DuplicateKind::Output, _) => format!("output {} claimed by several sources: {places}", d.name),
    }
}

/// The first [`SHOWN`] lines, indented, then how many more there are.
fn print_some(lines: impl ExactSizeIterator<Item = String>) {
    let total = lines.len();
    for line in lines.take(SHOWN) {
        errln!("  {line}");
    }
    if total > SHOWN {
        errln!("  ... and {} more", total - SHOWN);
    }
}
