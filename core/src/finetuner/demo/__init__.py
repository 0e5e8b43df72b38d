"""`finetuner demo`: real fine-tunes on data every machine has offline."""
