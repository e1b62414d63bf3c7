from emoconsole.entry import main

main()
