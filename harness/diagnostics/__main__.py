from harness.diagnostics.diagnose import main

main()
