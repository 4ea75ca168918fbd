//! Arbitrary UTF-8 to `ImageRef::from_str` (what `pouch pull/run/tag` and image archives give
//! it). Must never panic; a reference that parses must print (Display) as a string that parses
//! back to the same value, and must convert to an oci-client reference.

use pouch::image::reference::ImageRef;
use std::str::FromStr;

pub fn check(data: &[u8]) {
    let s = super::utf8_prefix(data);
    let Ok(r) = ImageRef::from_str(s) else {
        return;
    };
    let shown = r.to_string();
    let again = ImageRef::from_str(&shown).unwrap_or_else(|e| {
        panic!("{s:?} parsed as {r:?}, but its Display {shown:?} does not parse: {e}")
    });
    assert_eq!(r, again, "{s:?} -> {shown:?} does not round-trip");
    assert_eq!(shown, again.to_string());
    let _ = r.name();
    let _ = r.is_loopback_registry();
    let _ = r.to_client();
}
