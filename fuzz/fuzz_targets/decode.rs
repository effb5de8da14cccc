//! The decoders of what RDB, DUMP/RESTORE and the replication stream hand the module: a cache
//! entry (the type's rdb_load), the BATCHED queue, the rules and the LAZY marks (aux data, and
//! `CACHE.PENDING STATE` from an AOF rewrite), one queued request (`CACHE.PENDING ADD`) and one
//! LAZY mark (`CACHE.PENDING MARK`). The first byte picks the decoder. Oracles: no panic, no
//! allocation sized by a declared length (libFuzzer's -rss_limit_mb / -malloc_limit_mb catch
//! those), and what decodes encodes back to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagcache_fuzz::core::batch::{decode_item, encode_item, Batch};
use tagcache_fuzz::core::entry::Entry;
use tagcache_fuzz::core::lazy::{decode_mark, encode_mark, Lazy};
use tagcache_fuzz::core::rules::Rules;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(e) = Entry::decode(bytes) {
                let again = Entry::decode(&e.encode()).expect("an entry decodes what it encodes");
                assert_eq!(again, e);
            }
        }
        1 => {
            if let Ok(b) = Batch::decode(bytes) {
                let again = Batch::decode(&b.encode()).expect("the queue decodes what it encodes");
                assert_eq!(again.encode(), b.encode());
            }
        }
        2 => {
            if let Ok(r) = Rules::decode(bytes) {
                let again = Rules::decode(&r.encode()).expect("rules decode what they encode");
                assert_eq!(again.encode(), r.encode());
            }
        }
        3 => {
            if let Ok(p) = decode_item(bytes) {
                let again = decode_item(&encode_item(&p)).expect("a request decodes");
                assert_eq!(encode_item(&again), encode_item(&p));
            }
        }
        4 => {
            if let Ok((l, generation)) = Lazy::decode(bytes) {
                let (again, g) = Lazy::decode(&l.encode(generation)).expect("marks decode");
                assert_eq!((again.encode(g), g), (l.encode(generation), generation));
            }
        }
        _ => {
            if let Ok(m) = decode_mark(bytes) {
                let again = decode_mark(&encode_mark(&m)).expect("a mark decodes");
                assert_eq!(encode_mark(&again), encode_mark(&m));
            }
        }
    }
});
