//! `cargo run -p facegate-models --example install -- DIR [MIRROR]`: the
//! installer without the CLI (handy while developing converters).
fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: install DIR [MIRROR]");
    let options = facegate_models::provision::InstallOptions {
        dir: dir.into(),
        mirror: args.next(),
    };
    match facegate_models::provision::install(&options, &mut |l| eprintln!("{l}")) {
        Ok(outcome) => eprintln!("{outcome:?}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
