pub mod artifacts;
pub mod daemon;
pub mod logs;
pub mod run;
pub mod runs;
pub mod search;
pub mod ui;
