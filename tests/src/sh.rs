//! Running the tools that make fixtures, with errors that show the command and its output.

use anyhow::{bail, Context, Result};
use std::process::{Command, Output};

fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

/// Runs a command to completion; a non-zero exit is an error that quotes its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("starting {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// [`run`] with `input` on the command's standard input.
pub fn run_input(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    std::io::Write::write_all(child.stdin.as_mut().context("the command's input")?, input)?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{} failed ({}):\n{}", describe(cmd), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// `run` for a program and its arguments.
pub fn cmd<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run(Command::new(program).args(args))
}
