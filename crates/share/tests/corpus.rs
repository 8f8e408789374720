//! The frozen corpus: share links made by each released version decode to the same setup
//! forever. tests/data/share-links/vN/NAME.link holds the fragment, NAME.json the setup it
//! opened when it was made. Never edit these files; add new ones for new versions.

use std::path::PathBuf;
use tiller_share::{url, SteeringConfig};

#[test]
fn every_released_link_decodes_as_it_did() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/share-links");
    let mut n = 0;
    for version in std::fs::read_dir(&root).unwrap() {
        let dir = version.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "link") {
                let link = std::fs::read_to_string(&p).unwrap();
                let want = SteeringConfig::from_json(
                    &std::fs::read_to_string(p.with_extension("json")).unwrap(),
                )
                .unwrap();
                let got = url::decode(&link).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!(got, want, "{} decodes differently", p.display());
                // And today's encoder writes a link that opens the same setup.
                assert_eq!(url::decode(&url::encode(&got).unwrap()).unwrap(), want);
                n += 1;
            }
        }
    }
    println!("{n} frozen links decode as they did");
    assert!(n >= 3, "the corpus is missing ({n} links under {})", root.display());
}

/// Every preset and lesson the page offers opens (www/presets/*.json, bar the index).
#[test]
fn every_preset_opens() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../www/presets");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") && !p.ends_with("index.json") {
            let c = SteeringConfig::from_json(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            url::decode(&url::encode(&c).unwrap()).unwrap();
            n += 1;
        }
    }
    assert!(n >= 9, "{n} presets under {}", dir.display());
    // The menu lists files that exist; its lessons have a lesson with at least 3 steps.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let mut lessons = 0;
    for e in index.as_array().unwrap() {
        let file = e["file"].as_str().unwrap();
        let c = SteeringConfig::from_json(&std::fs::read_to_string(dir.join(file)).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if e["kind"] == "lesson" {
            let l = c.lesson.unwrap_or_else(|| panic!("{file} is listed as a lesson but has none"));
            assert!(l.steps.len() >= 3, "{file}: {} steps", l.steps.len());
            lessons += 1;
        }
    }
    assert!(lessons >= 5, "{lessons} lessons in the menu");
}
