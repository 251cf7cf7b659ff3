from dqtl.cli.main import console

console()
