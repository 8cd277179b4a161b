//! The pure core's data-driven and property tests: masking fixtures, translation fixtures,
//! translation properties and compatibility verdicts. One binary that links only `xgate-core`.

mod compatibility_fixtures;
mod masking_fixtures;
mod translate_fixtures;
mod translate_properties;
