from harness.sweep.run import main

main()
