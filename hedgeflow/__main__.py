from hedgeflow.cli import main

main()  # ends the process itself (hedgeflow.cli._end_process)
