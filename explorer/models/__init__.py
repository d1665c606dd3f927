"""Models: the Llama-family decoder, checkpoint loading, tokenizer text, decoding and the demo-pair trainer."""
