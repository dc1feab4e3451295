"""The load stage: assembles complete encounters and writes them into the serving database."""
