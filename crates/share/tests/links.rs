//! Share links: round trip (property test), sizes, versions, caps and damaged links.

use proptest::prelude::*;
use tiller_model::ChatMessage;
use tiller_share::config::{ModelRef, Sampling, SteeringConfig, View, VERSION};
use tiller_share::lesson::{Action, Lesson, Step, PANELS, RUNS};
use tiller_share::url::{decode, encode, payload};
use tiller_steer::concept::{Concept, Read};
use tiller_steer::condition::Condition;
use tiller_steer::conversation::{Conversation, ROLES};
use tiller_steer::directions::Method;
use tiller_steer::intervene::Positions;
use tiller_steer::plan::{InterventionSpec, OpKind};

fn text() -> impl Strategy<Value = String> {
    // Any characters, at least one that is not whitespace.
    ("[^\\s]", any::<String>())
        .prop_map(|(a, b)| format!("{a}{}", b.chars().take(60).collect::<String>()))
}

fn concept(i: usize) -> impl Strategy<Value = Concept> {
    (
        text(),
        prop::collection::vec((text(), text()), 1..6),
        prop_oneof![Just(Read::LastToken), Just(Read::Mean)],
        prop_oneof![
            Just(Method::MeanDiff),
            Just(Method::Pca),
            Just(Method::Probe),
            Just(Method::Svd),
            Just(Method::Snmf),
            Just(Method::PcaRepe)
        ],
    )
        .prop_map(move |(n, pairs, read, method)| Concept {
            name: format!("{i}{n}"),
            pairs,
            read,
            method,
        })
}

fn positions() -> impl Strategy<Value = Positions> {
    prop_oneof![
        Just(Positions::All),
        Just(Positions::Prompt),
        Just(Positions::Generated),
        (0usize..100_000, prop_oneof![0usize..100_000, Just(usize::MAX)])
            .prop_map(|(start, end)| Positions::Range { start, end }),
    ]
}

fn config() -> impl Strategy<Value = SteeringConfig> {
    let concepts = (1usize..4).prop_flat_map(|n| (0..n).map(concept).collect::<Vec<_>>());
    concepts
        .prop_flat_map(|cs| {
            let n = cs.len();
            let iv = (
                0..n,
                prop_oneof![
                    Just(OpKind::Add),
                    Just(OpKind::AddUnit),
                    Just(OpKind::Ablate),
                    Just(OpKind::Clamp),
                    Just(OpKind::Rotate),
                    Just(OpKind::SelectiveSteering),
                    Just(OpKind::Affine)
                ],
                prop::collection::vec(0usize..64, 1..10),
                -1e6f32..1e6,
                positions(),
                any::<bool>(),
                any::<bool>(),
            );
            (
                Just(cs),
                prop::collection::vec(iv, 0..5),
                any::<String>(),
                any::<bool>(),
                (0u32..4096, 0f32..5.0, 0u32..100, 0.01f32..=1.0, any::<u64>()),
                (
                    prop::option::of(0..n),
                    prop::option::of(0u32..64),
                    prop::option::of("[a-z]{1,8}"),
                    any::<bool>(),
                ),
                prop_oneof![
                    Just(ModelRef::default()),
                    "https://[a-z]{1,12}\\.example/[a-z]{1,8}\\.gguf"
                        .prop_map(|id| ModelRef { id, sha256: None }),
                    ("[a-z]{1,12}\\.gguf", "[0-9a-f]{64}")
                        .prop_map(|(id, h)| ModelRef { id, sha256: Some(h) }),
                ],
                prop::option::of((0..n, 0usize..64, -1f32..1.0, any::<bool>())),
                prop::option::of((
                    prop::collection::vec((0usize..3, any::<String>()), 1..4),
                    0usize..2,
                    any::<String>(),
                )),
                prop::option::of((
                    any::<String>(),
                    prop::collection::vec(
                        (
                            text(),
                            any::<String>(),
                            prop::option::of(0..n),
                            prop::option::of(0u32..64),
                            prop::option::of(prop::sample::select(PANELS)),
                            prop::option::of(prop::sample::select(RUNS)),
                        ),
                        1..5,
                    ),
                    any::<prop::sample::Index>(),
                )),
            )
        })
        .prop_map(|(concepts, ivs, prompt, chat, s, v, model, cond, conv, lesson)| {
            let (lesson, step) = match lesson {
                Some((title, steps, at)) => {
                    let n = steps.len();
                    let steps = steps
                        .into_iter()
                        .map(|(text, q, c, layer, panel, run)| Step {
                            text,
                            todo: String::new(),
                            question: q.chars().take(30).collect(),
                            expect: String::new(),
                            action: Action {
                                concept: c.map(|i| concepts[i].name.clone()),
                                layer,
                                panel: panel.map(String::from),
                                run: run.map(String::from),
                            },
                        })
                        .collect();
                    let title = title.chars().take(30).collect();
                    (Some(Lesson { title, steps }), Some(at.index(n) as u32))
                }
                None => (None, None),
            };
            let conversation = conv.map(|(turns, steer_from, probe)| Conversation {
                turns: turns
                    .into_iter()
                    .map(|(r, c)| ChatMessage {
                        role: ROLES[r].to_string(),
                        content: c.chars().take(40).collect(),
                    })
                    .collect(),
                steer_from,
                probe: probe.chars().take(40).collect(),
            });
            let condition = cond.map(|(c, layer, threshold, below)| Condition {
                concept: concepts[c].name.clone(),
                layer,
                threshold,
                below,
            });
            let interventions = ivs
                .into_iter()
                .map(|(c, op, layers, strength, positions, selective, enabled)| InterventionSpec {
                    concept: concepts[c].name.clone(),
                    op,
                    layers,
                    strength,
                    positions,
                    selective,
                    enabled,
                })
                .collect();
            SteeringConfig {
                version: VERSION,
                model,
                view: View {
                    concept: v.0.map(|i| concepts[i].name.clone()),
                    layer: v.1,
                    panel: v.2,
                    reading: None,
                    large_text: v.3,
                    step,
                },
                concepts,
                interventions,
                prompt: prompt.chars().take(200).collect(),
                chat,
                sampling: Sampling {
                    max_tokens: s.0,
                    temperature: s.1,
                    top_k: s.2,
                    top_p: s.3,
                    seed: s.4,
                },
                condition,
                conversation,
                lesson,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("TILLER_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn config_to_link_to_config_is_identity(c in config()) {
        let link = encode(&c).unwrap();
        prop_assert!(link.starts_with("#c="));
        prop_assert!(link[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let back = decode(&link).unwrap();
        prop_assert_eq!(&back, &c);
        // JSON files round trip too.
        prop_assert_eq!(SteeringConfig::from_json(&c.to_json_pretty()).unwrap(), c);
    }

    #[test]
    fn damaged_links_are_errors_not_panics(c in config(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let link = encode(&c).unwrap();
        let p = &link[3..];
        let _ = decode(&p[..cut.index(p.len())]);
        let mut b = p.as_bytes().to_vec();
        let i = flip.0.index(b.len());
        b[i] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[(flip.1 % 64) as usize];
        let _ = decode(std::str::from_utf8(&b).unwrap());
    }

    #[test]
    fn any_string_decodes_or_errs(s in any::<String>()) {
        let _ = decode(&s);
    }
}

fn typical() -> SteeringConfig {
    let pairs =
        |p: &[(&str, &str)]| p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let formal = Concept {
        name: "formality".into(),
        pairs: pairs(&[
            ("I would be grateful if you could send me the report", "send me the report asap"),
            (
                "Dear Sir or Madam, I am writing to inquire about the position",
                "hey, is that job still open",
            ),
            ("Please accept my sincere apologies for the delay", "sorry i'm late lol"),
            ("Kindly confirm your attendance at the meeting", "u coming to the meeting?"),
            (
                "We regret to inform you that your application was unsuccessful",
                "nope, you didn't get it",
            ),
            ("I look forward to hearing from you at your convenience", "text me back whenever"),
            ("Thank you very much for your kind assistance", "thx for the help"),
            ("Could you please clarify the following point", "wait what do you mean"),
        ]),
        read: Read::LastToken,
        method: Method::MeanDiff,
    };
    let sentiment = Concept {
        name: "sentiment".into(),
        pairs: pairs(&[
            (
                "I absolutely loved this movie, it was wonderful",
                "I absolutely hated this movie, it was awful",
            ),
            ("What a beautiful and happy day", "What a miserable and gloomy day"),
            (
                "The food was delicious and the staff were kind",
                "The food was disgusting and the staff were rude",
            ),
            ("I am so grateful for my friends", "I am so tired of my friends"),
            (
                "This is the best gift I have ever received",
                "This is the worst gift I have ever received",
            ),
            ("The concert was amazing and joyful", "The concert was boring and dreadful"),
            ("She smiled warmly and thanked us", "She frowned coldly and ignored us"),
            ("Our trip was a delightful adventure", "Our trip was a frustrating disaster"),
        ]),
        read: Read::LastToken,
        method: Method::Pca,
    };
    let iv = |c: &str, op, layers: Vec<usize>, s| InterventionSpec {
        concept: c.into(),
        op,
        layers,
        strength: s,
        positions: Positions::All,
        selective: false,
        enabled: true,
    };
    SteeringConfig {
        concepts: vec![formal, sentiment],
        interventions: vec![
            iv("formality", OpKind::Add, vec![10], 4.0),
            iv("sentiment", OpKind::Rotate, (8..=16).collect(), 30.0),
            iv("sentiment", OpKind::Ablate, vec![20, 21, 22], 0.0),
        ],
        prompt: "Write a short note to your neighbour about the party.".into(),
        chat: true,
        view: View { concept: Some("formality".into()), layer: Some(10), ..Default::default() },
        ..Default::default()
    }
}

#[test]
fn typical_setup_fits_in_2000_characters() {
    let c = typical();
    let link = encode(&c).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    println!(
        "typical setup (2 concepts x 8 pairs, 3 interventions): JSON {} bytes, link fragment {} characters",
        json.len(),
        link.len()
    );
    assert!(link.len() <= 2000, "{} characters", link.len());
    assert_eq!(decode(&format!("https://tiller.example/play/{link}")).unwrap(), c);
}

#[test]
fn payload_forms() {
    assert_eq!(payload("https://x.example/p/#c=abc"), "abc");
    assert_eq!(payload("#c=abc"), "abc");
    assert_eq!(payload("c=abc"), "abc");
    assert_eq!(payload("#v=2&c=abc"), "abc");
    assert_eq!(payload("abc"), "abc");
}

/// A setup the previous release can carry is written as V1 (it opens there); one that uses
/// the RepE method or the Selective Steering op is written as V2, one with a condition as V3,
/// and all open here.
#[test]
fn links_use_the_oldest_version_that_carries_the_setup() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let version = |link: &str| b64.decode(payload(link)).unwrap()[0];
    let c = typical();
    let l1 = encode(&c).unwrap();
    assert_eq!(version(&l1), 1);
    let mut c2 = typical();
    c2.concepts[0].method = Method::PcaRepe;
    let l2 = encode(&c2).unwrap();
    assert_eq!(version(&l2), 2);
    assert_eq!(decode(&l2).unwrap(), c2);
    let mut c3 = typical();
    c3.interventions[0].op = OpKind::SelectiveSteering;
    let l3 = encode(&c3).unwrap();
    assert_eq!((version(&l3), decode(&l3).unwrap()), (2, c3));
    // A condition (conditional steering) needs V3.
    let mut c4 = typical();
    let name = c4.concepts[0].name.clone();
    c4.condition = Some(Condition { concept: name, layer: 12, threshold: 0.05, below: false });
    let l4 = encode(&c4).unwrap();
    assert_eq!((version(&l4), decode(&l4).unwrap()), (3, c4.clone()));
    let mut c5 = typical();
    c5.conversation = Some(Conversation {
        turns: vec![
            ChatMessage::user("hi"),
            ChatMessage { role: "assistant".into(), content: "hello".into() },
        ],
        steer_from: 1,
        probe: "How formal are you?".into(),
    });
    let l5 = encode(&c5).unwrap();
    assert_eq!((version(&l5), decode(&l5).unwrap()), (3, c5));
    // A lesson needs V4, and carries its open step.
    let mut c6 = typical();
    c6.lesson = Some(Lesson {
        title: "Read it".into(),
        steps: vec![
            Step { text: "Look at the chart.".into(), ..Default::default() },
            Step {
                text: "Select the best layer.".into(),
                action: Action {
                    layer: Some(12),
                    panel: Some("results".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        ],
    });
    c6.view.step = Some(1);
    let l6 = encode(&c6).unwrap();
    assert_eq!((version(&l6), decode(&l6).unwrap()), (4, c6.clone()));
    c6.view.step = Some(2);
    assert!(encode(&c6).unwrap_err().to_string().contains("the lesson has 2 steps"));
    // A condition naming no concept of the setup is refused.
    c4.condition.as_mut().unwrap().concept = "nobody".into();
    assert!(encode(&c4).unwrap_err().to_string().contains("condition names concept"));
}

#[test]
fn newer_versions_and_bad_links_say_so() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let newer = format!("#c={}", b64.encode([9u8, 1, 2, 3]));
    let e = decode(&newer).unwrap_err().to_string();
    assert!(e.contains("newer Tiller") && e.contains("version 9"), "{e}");
    let json = r#"{"version": 7, "future_field": 1}"#;
    assert!(SteeringConfig::from_json(json).unwrap_err().to_string().contains("newer Tiller"));
    assert!(decode("").unwrap_err().to_string().contains("no setup"));
    assert!(decode("#c=!!!").unwrap_err().to_string().contains("base64"));
    assert!(decode(&format!("#c={}", b64.encode([1u8, 0xff, 0xfe])))
        .unwrap_err()
        .to_string()
        .contains("damaged"));
    // A decompression bomb stops at the limit.
    let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 4 << 20], 10);
    let mut b = vec![1u8];
    b.extend(bomb);
    assert!(decode(&format!("#c={}", b64.encode(b))).is_err());
}

#[test]
fn caps_are_enforced_with_clear_messages() {
    let mut c = typical();
    c.concepts =
        (0..17).map(|i| Concept { name: format!("c{i}"), ..c.concepts[0].clone() }).collect();
    c.interventions.clear();
    c.view.concept = None;
    assert!(encode(&c).unwrap_err().to_string().contains("concepts: 17"));
    let mut c = typical();
    c.interventions[0].concept = "nope".into();
    assert!(encode(&c).unwrap_err().to_string().contains("does not define"));
    let mut c = typical();
    c.interventions[0].strength = f32::NAN;
    assert!(encode(&c).is_err());
    let mut c = typical();
    c.concepts[0].pairs[0].0 = "x".repeat(5000);
    assert!(encode(&c).unwrap_err().to_string().contains("characters"));
    let mut c = typical();
    c.concepts[1].name = "formality".into();
    assert!(encode(&c).unwrap_err().to_string().contains("two concepts"));
}
