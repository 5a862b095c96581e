//! Shared fixtures for the integration tests.
#![allow(dead_code)] // each test file uses a different part of the fixtures

pub mod server;
