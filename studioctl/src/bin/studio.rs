fn main() -> std::process::ExitCode {
    studioctl::main()
}
