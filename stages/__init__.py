"""What dvc.yaml runs: one thin entry point per stage, `python -m stages.<name> ...`.

This folder is not installed: it belongs to the checkout that holds dvc.yaml. Each file reads
its item of params.yaml's plan and calls the library (the `pipeline` package); none holds logic
of its own, so each stage's DVC dependencies are its file and the library code it imports.
"""
