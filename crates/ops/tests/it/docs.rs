//! The control map stays true: every test it names exists, and every path it names is in the
//! repository.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("utf8"));
        }
    }
}

#[test]
fn every_test_and_path_the_control_map_names_exists() {
    let map = std::fs::read_to_string(repo().join("docs/soc2-control-map.md")).expect("map");
    let mut code = String::new();
    sources(&repo().join("crates"), &mut code);
    let quoted: Vec<&str> = map.split('`').skip(1).step_by(2).collect();
    let mut tests = 0;
    for q in quoted {
        let q = q.trim();
        let is_test = q
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && q.matches('_').count() >= 2;
        if is_test {
            tests += 1;
            assert!(
                code.contains(&format!("fn {q}(")),
                "the control map names a test {q} that does not exist"
            );
        } else if q.contains('/') && !q.contains(' ') && !q.starts_with('/') && !q.contains('{') {
            let path = q.trim_end_matches(',');
            assert!(
                repo().join(path).exists(),
                "the control map names {path}, which does not exist"
            );
        }
    }
    assert!(tests > 30, "only {tests} tests named");
}
