from emoconsole.cli import main

main()
