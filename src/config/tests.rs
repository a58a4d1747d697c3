use super::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn config_parsing_never_panics(s in "(?s).{0,400}") {
        let _ = Config::parse(&s);
    }

    #[test]
    fn config_shaped_noise_never_panics(s in "(listen|tag_ttl|data_dir|max_cache_bytes|offline) = (\"[a-z0-9:.]{0,12}\"|[0-9]{1,5}|true)\n\\[\\[(upstream|policy|retention)\\]\\]\n(name|url|action|pin|max_idle) = (\"[a-z:/.0-9]{0,16}\"|true)\n") {
        let _ = Config::parse(&s);
    }
}

const MINIMAL: &str = r#"
listen = "127.0.0.1:5000"
data_dir = "data"
[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
"#;

#[test]
fn minimal_config_runs_with_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.default_upstream.as_deref(), Some("docker.io"));
    assert_eq!(c.tag_ttl, Duration::from_secs(1));
    assert_eq!(c.max_manifest_size, 4 << 20);
    let up = &c.upstreams[0];
    assert!(up.library_prefix);
    assert!(up.aliases.contains(&"index.docker.io".to_owned()));
    // A client hears of a silent upstream within 30 s (kubelet gives up after 60).
    assert!(up.response_timeout + Duration::from_secs(1) + up.idle_timeout <= Duration::from_secs(30));
}

#[test]
fn an_upstream_answers_to_the_host_of_its_url() {
    let two = "[[upstream]]\nname = \"internal\"\nurl = \"https://registry.example.com:5000\"\n[[upstream]]\nname = \"hub\"\nurl = \"https://mirror.example.org:443\"\n";
    let c = Config::parse(two).unwrap();
    let names = |i: usize| c.upstreams[i].names().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(names(0), ["internal", "registry.example.com:5000"]);
    assert_eq!(names(1), ["hub", "mirror.example.org", "mirror.example.org:443"]);

    let clash = format!("{two}[[upstream]]\nname = \"again\"\nurl = \"https://REGISTRY.example.com:5000\"\n");
    let e = err(&clash);
    assert!(
        e.contains("upstream[2]")
            && e.contains("\"internal\"")
            && e.contains("\"again\"")
            && e.contains("registry.example.com:5000"),
        "{e}"
    );
}

#[test]
fn shipped_config_is_valid() {
    let text = include_str!("../../config.toml");
    Config::parse(text).unwrap();
}

#[test]
fn shipped_examples_are_valid_when_uncommented() {
    // Every example from the [[policy]] notes on, and the commented cache budget.
    let shipped = include_str!("../../config.toml");
    let examples_from = shipped.find("# --- [[policy]]").unwrap();
    let uncomment = |l: &'static str| match l.strip_prefix("# ") {
        Some(rest)
            if rest.starts_with("[[")
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
        {
            rest
        }
        _ => l,
    };
    let head = shipped[..examples_from].replace("# max_cache_bytes", "max_cache_bytes");
    let text = format!(
        "{head}{}",
        shipped[examples_from..]
            .lines()
            .map(uncomment)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The signing example names a key an operator puts in /etc/entrepot; here, one of ours.
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), crate::policy::cosign::tests::Signer::ed25519().public_pem()).unwrap();
    let text = text.replace("/etc/entrepot/cosign.pub", key.path().to_str().unwrap());
    let c = Config::parse(&text).unwrap();
    assert!(c.policy.rules.len() >= 8, "{}", c.policy.rules.len());
    assert!(c.policy.rules.iter().any(|r| r.require_signature.is_some()));
    assert!(c.retention.classes.iter().any(|r| r.name == "signatures" && r.pin));
    assert_eq!(c.retention.limits.max_cache_bytes, Some(200 << 30));
}

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_the_key() {
    assert!(err("listen = \"nope\"\n[[upstream]]\nname=\"a\"\nurl=\"http://a\"").contains("listen"));
    assert!(err("[[upstream]]\nname=\"a\"\nurl=\"ftp://a\"").contains("upstream[0].url"));
    assert!(err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\ntag_ttl=\"x\"").contains("unknown field"));
    assert!(err("tag_ttl = \"soon\"\n[[upstream]]\nname=\"a\"\nurl=\"http://a\"").contains("tag_ttl"));
    assert!(err("default_upstream=\"b\"\n[[upstream]]\nname=\"a\"\nurl=\"http://a\"").contains("default_upstream"));
    assert!(
        err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\nrepository_prefix=\"/docker.io/\"")
            .contains("upstream[0].repository_prefix")
    );
    let up = "[[upstream]]\nname=\"a\"\nurl=\"http://a\"\n";
    let cluster = |body: &str| err(&format!("{up}[cluster]\n{body}"));
    assert!(cluster("peers = [\"http://b:5000\"]\nsecret = \"0123456789abcdef\"").contains("cluster.self"));
    assert!(
        cluster("self = \"http://a:5000\"\npeers = [\"http://b:5000\"]\nsecret = \"0123456789abcdef\"")
            .contains("must list this node")
    );
    assert!(cluster("self = \"http://a:5000\"\npeers = [\"http://a:5000\"]").contains("cluster.secret"));
    assert!(
        cluster("self = \"http://a:5000\"\npeers = [\"http://a:5000\"]\nsecret = \"short\"").contains("16 characters")
    );
    assert!(cluster("self = \"http://a:5000/x\"\npeers = []\nsecret = \"0123456789abcdef\"").contains("cluster.self"));
    let c = Config::parse(&format!(
        "{up}[cluster]\nself = \"http://A:5000/\"\npeers = [\"http://b:5000\", \"http://a:5000\"]\nsecret = \"0123456789abcdef\""
    ))
    .unwrap();
    let c = c.cluster.unwrap();
    assert_eq!((c.self_url.as_str(), c.peers.len()), ("http://a:5000", 2));
    let storage = |body: &str| err(&format!("{up}[storage]\n{body}"));
    assert!(storage("type = \"gcs\"").contains("storage.type"));
    assert!(storage("type = \"s3\"\nbucket = \"b\"").contains("storage.endpoint"));
    assert!(
        storage("type = \"s3\"\nendpoint = \"http://s3\"\nbucket = \"b\"\nsecret_access_key = \"s\"")
            .contains("storage.access_key_id")
    );
    let both = format!(
        "max_cache_bytes = \"1GiB\"\n{up}[storage]\ntype = \"s3\"\nendpoint = \"http://s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nlocal_max_bytes = \"2GiB\""
    );
    assert!(err(&both).contains("storage.local_max_bytes"));
    let c = Config::parse(&both.replace("max_cache_bytes = \"1GiB\"\n", "")).unwrap();
    assert_eq!(c.retention.limits.max_cache_bytes, Some(2 << 30));
    let storage = c.storage.unwrap();
    assert_eq!(storage.region, "us-east-1");
    assert!(!storage.limits.any());
    let limited = Config::parse(&format!(
        "{up}[storage]\ntype = \"s3\"\nendpoint = \"http://s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nmax_bytes = \"1TiB\"\nmax_idle = \"2d\""
    ))
    .unwrap();
    let limits = limited.storage.unwrap().limits;
    assert_eq!(
        (limits.max_bytes, limits.max_idle),
        (Some(1 << 40), Some(2 * 86_400_000))
    );
    assert!(
        err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\n[[upstream]]\nname=\"a\"\nurl=\"http://b\"")
            .contains("upstream[1]")
    );
    assert!(err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\nusername=\"u\"").contains("upstream[0].username"));
    assert!(
        err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\nusername=\"u\"\npassword_env=\"ENTREPOT_SURELY_UNSET\"")
            .contains("upstream[0].password_env")
    );
    assert!(err("").contains("upstream"));
}

#[test]
fn policy_and_retention_errors_name_the_rule() {
    let up = "[[upstream]]\nname=\"a\"\nurl=\"http://a\"\n";
    let e = err(&format!(
        "{up}[[policy]]\naction = \"allow\"\n[[policy]]\naction = \"deny\"\nartifact = \"x\"\n"
    ));
    assert!(e.contains("policy[1]") && e.contains("artifact"), "{e}");
    let e = err(&format!(
        "{up}[[policy]]\nname = \"sigs\"\naction = \"deny\"\nrequire_referrer = \"x\"\n"
    ));
    assert!(e.contains("policy[0] (sigs).require_referrer"), "{e}");
    let e = err(&format!(
        "{up}[[policy]]\nname = \"sigs\"\naction = \"allow\"\nrequire_signature = {{ cosign_keys = [\"/nonexistent/cosign.pub\"] }}\n"
    ));
    assert!(
        e.contains("policy[0] (sigs).require_signature.cosign_keys") && e.contains("/nonexistent/cosign.pub"),
        "{e}"
    );
    let not_a_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_key.path(), "hello").unwrap();
    let e = err(&format!(
        "{up}[[policy]]\naction = \"allow\"\nrequire_signature = {{ cosign_keys = [{:?}] }}\n",
        not_a_key.path().display().to_string()
    ));
    assert!(
        e.contains("require_signature.cosign_keys") && e.contains("no PEM public key"),
        "{e}"
    );
    let e = err(&format!(
        "{up}[[policy]]\naction = \"allow\"\nrequire_signature = {{ cosign_keys = [] }}\n"
    ));
    assert!(e.contains("name at least one public key"), "{e}");
    let e = err(&format!(
        "{up}[[policy]]\naction = \"deny\"\nrequire_signature = {{ cosign_keys = [\"k\"] }}\n"
    ));
    assert!(e.contains("only an allow rule can require a signature"), "{e}");
    let e = err(&format!("{up}[[policy]]\naction = \"maybe\"\n"));
    assert!(e.contains("policy[0]"), "{e}");
    let e = err(&format!("{up}[[policy]]\naction = \"deny\"\nplatform = []\n"));
    assert!(e.contains("policy[0].platform"), "{e}");
    let e = err(&format!(
        "{up}[[retention]]\nname = \"sigs\"\npin = true\nmax_idle = \"7d\"\n"
    ));
    assert!(e.contains("retention[0] (sigs).pin"), "{e}");
    let e = err(&format!("{up}[[retention]]\nmax_bytes = \"lots\"\n"));
    assert!(e.contains("retention[0].max_bytes"), "{e}");
    let e = err(&format!(
        "max_cache_bytes = \"1GiB\"\nhigh_watermark = 50\nlow_watermark = 60\n{up}"
    ));
    assert!(e.contains("low_watermark"), "{e}");
    let ok = Config::parse(&format!("default_policy = \"deny\"\nmax_cache_bytes = \"200GiB\"\n{up}[[policy]]\naction = \"allow\"\nrepository = \"library/*\"\n[[retention]]\nname = \"signatures\"\nartifact_type = \"application/vnd.dev.cosign.*\"\npin = true\n")).unwrap();
    assert_eq!(ok.policy.default, Action::Deny);
    assert_eq!(ok.policy.rules[0].name, "policy[0]");
    assert_eq!(ok.retention.classes[0].name, "signatures");
    assert_eq!(ok.retention.limits.max_cache_bytes, Some(200 << 30));
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("4MiB"), Some(4 << 20));
    assert_eq!(parse_size("200GiB"), Some(200 << 30));
    assert_eq!(parse_size("10"), Some(10));
    assert_eq!(parse_size("ten"), None);
}
