//! End-to-end tests: the real `imgpipe` binary, real HTTP, and the real
//! local servers `.ci/run` starts (SeaweedFS). One test binary, so the
//! workspace links once.
#![allow(clippy::unwrap_used, dead_code)]

mod common;
mod contract;

mod access;
mod analyst;
mod api;
mod browser;
mod cost;
mod crash;
mod disk_full;
mod faults;
mod front_door;
mod fuzz_corpus;
mod hostile;
mod infra;
mod kafka;
mod load;
mod purge;
mod s3_lake;
mod script;
mod storage_conformance;
mod trust;
