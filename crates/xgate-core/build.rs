//! The gateway's build script, for this crate's own tests that need the JSON Schema test suite:
//! see `../../build.rs`. Nothing the core compiles reads its flags.

#[path = "../../build.rs"]
mod gateway;

fn main() {
    gateway::main();
}
