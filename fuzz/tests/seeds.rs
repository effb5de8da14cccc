//! The seed corpus against the parsers it seeds.
/// The checked-in seeds that are meant to be valid still decode and parse (they are written
/// by `make_seeds.py`; a change of an encoding or of a syntax shows here).
#[test]
fn valid_seeds_still_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
    let read = |t: &str, n: &str| std::fs::read(format!("{dir}/{t}/{n}")).expect("seed");
    for n in ["entry_full", "entry_bare", "entry_binary"] {
        let d = read("decode", n);
        assert!(
            tagcache_fuzz::core::entry::Entry::decode(&d[1..]).is_ok(),
            "{n}"
        );
    }
    assert!(tagcache_fuzz::core::batch::Batch::decode(&read("decode", "batch")[1..]).is_ok());
    assert!(tagcache_fuzz::core::batch::decode_item(&read("decode", "item")[1..]).is_ok());
    assert!(tagcache_fuzz::core::rules::Rules::decode(&read("decode", "rules")[1..]).is_ok());
    for n in ["set_min", "set_full", "set_keepttl", "set_pxat_keepttl"] {
        let d = read("args", n);
        assert!(
            tagcache_fuzz::core::parse::parse_set(&tagcache_fuzz::split_args(&d), 0).is_ok(),
            "{n}"
        );
    }
    let d = read("args", "rule_set");
    let r = tagcache_fuzz::core::rules::Rules::parse_rule_command(&tagcache_fuzz::split_args(&d));
    assert!(r.is_ok(), "{:?}", r.err());
}
