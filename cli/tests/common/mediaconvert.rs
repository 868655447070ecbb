//! The local MediaConvert endpoint (`mediaconvert_mock.py` beside this file)
//! as a child process, for the CLI tests and the engine's submit test (which
//! includes this file by path: the two crates' tests share no module).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The running endpoint, killed when dropped.
pub struct Mock {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start it with `args` (see the script's doc) once it says where it listens.
pub fn start_mock(args: &[&str]) -> Mock {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("cli/tests/common/mediaconvert_mock.py");
    let mut child = Command::new("python3").arg(script).args(args).stdout(Stdio::piped()).spawn().expect("python3 must be on PATH");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("mock said {line:?}")).to_string();
    Mock { child, url }
}
