//! The client side: the `backprop` subcommands people use (train on a CSV, models,
//! export/import, graph, health) and the load generator, against a server the test
//! starts.
mod about;
mod bench;
mod cli;
