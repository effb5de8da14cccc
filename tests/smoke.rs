mod common;
use common::*;

#[test]
fn module_loads_and_round_trips() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        ok(&mut c, &["CACHE.SET", "k", "v", "TAGS", "1", "t"]),
        Value::Okay
    );
    assert_eq!(bytes(&ok(&mut c, &["CACHE.GET", "k"])), Some(b"v".to_vec()));
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["k"]);
    verify(&mut c);
}
