//! Arbitrary bytes to the image-document parsers, as a registry or an image archive would
//! send them: `parse_document` with no Content-Type, with each type of `MANIFEST_ACCEPT` (and a
//! parameterised one), and `serde_json::from_slice::<ImageConfig>`. Must never panic.
//!
//! Input: the first byte picks the Content-Type; the rest is the document.

use pouch::image::manifest::{parse_document, Document, ImageConfig, MANIFEST_ACCEPT};

pub fn check(data: &[u8]) {
    let Some((&sel, doc)) = data.split_first() else {
        return;
    };
    let n = MANIFEST_ACCEPT.len();
    let with_params;
    let content_type = match sel as usize % (n + 3) {
        i if i < n => Some(MANIFEST_ACCEPT[i]),
        i if i == n => None,
        i if i == n + 1 => Some("application/json"),
        _ => {
            with_params = format!(" {} ; charset=utf-8", MANIFEST_ACCEPT[sel as usize % n]);
            Some(with_params.as_str())
        }
    };
    match parse_document(doc, content_type, "fuzzed manifest") {
        Ok(Document::Manifest(m)) => {
            // what pull does next with a manifest: serialise it back, walk its descriptors
            let _ = serde_json::to_vec(&m);
        }
        Ok(Document::Index(i)) => {
            let _ = serde_json::to_vec(&i);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(c) = serde_json::from_slice::<ImageConfig>(doc) {
        let _ = serde_json::to_vec(&c);
    }
}
