fn main() -> std::process::ExitCode {
    studiod::main()
}
