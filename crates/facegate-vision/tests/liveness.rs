//! Liveness on the development set (`shared/datasets/spoof_dev`, or
//! `$FACEGATE_TEST_SPOOF_DEV`): the balanced level's targets. The full tables
//! come from examples/liveness_eval.rs (docs/benchmarks.md).

mod common;
#[path = "common/spoof_dev.rs"]
mod spoof_dev;

use facegate_vision::liveness;
use facegate_vision::pipeline::{Engine, EngineOptions};
use facegate_vision::runtime::RuntimeKind;
use facegate_vision::spoof::SpoofCondition;
use spoof_dev::{Frame, FrameResult, Metrics};

/// Every frame of the set, evaluated on two threads.
fn evaluate_all() -> (Vec<Frame>, Vec<FrameResult>) {
    let dir = spoof_dev::default_dir();
    let frames = spoof_dev::load_labels(&dir).unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::load(&EngineOptions::new(
        common::model_dir(),
        RuntimeKind::OnnxRuntime,
    ))
    .expect("models load (run scripts/test.sh to provision them)");
    let half = frames.len().div_ceil(2);
    let results: Vec<FrameResult> = std::thread::scope(|s| {
        let workers: Vec<_> = frames
            .chunks(half.max(1))
            .map(|chunk| {
                let (engine, dir) = (&engine, &dir);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| {
                            spoof_dev::evaluate(engine, dir, f).unwrap_or_else(|e| panic!("{e}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    (frames, results)
}

#[test]
fn balanced_level_meets_the_development_targets() {
    let (frames, results) = evaluate_all();
    println!("{}", spoof_dev::report(&frames, &results));
    let balanced = liveness::threshold(SpoofCondition::Balanced);
    let pairs = || frames.iter().zip(&results);

    let live = Metrics::of(pairs().filter(|(f, _)| f.is_live()), balanced);
    assert!(live.live >= 100, "{live:?}");
    assert!(
        live.bpcer() <= 0.03,
        "balanced refuses {} of {} live frames",
        live.live_refused,
        live.live
    );

    let flat = Metrics::of(pairs().filter(|(f, _)| f.is_flat_attack()), balanced);
    assert!(flat.spoof >= 100, "{flat:?}");
    assert!(
        flat.apcer() <= 0.02,
        "balanced accepts {} of {} print and screen attacks",
        flat.spoof_accepted,
        flat.spoof
    );
}

/// Issue 10, item 3: not met yet. MiniFASNet scores both masks and both
/// cut-outs of spoof_dev 0.98–1.0 whatever the crop, and no cue that
/// generalises beyond these four frames is in place (docs/models.md).
#[test]
#[ignore = "masks and cut-outs still pass (issue 10, item 3)"]
fn masks_and_cutouts_score_below_balanced() {
    let (frames, results) = evaluate_all();
    let balanced = liveness::threshold(SpoofCondition::Balanced);
    let pairs = || frames.iter().zip(&results);
    let worn: Vec<_> = pairs()
        .filter(|(f, _)| matches!(f.attack.as_str(), "mask" | "cutout"))
        .collect();
    assert_eq!(worn.len(), 4, "spoof_dev has two masks and two cut-outs");
    for (f, r) in worn {
        assert!(
            !r.accepted(balanced),
            "{} ({}) accepted: score {:.3}",
            f.path,
            f.attack,
            r.score()
        );
    }
}
