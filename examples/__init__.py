"""Runnable examples for voice-router (see the numbered scripts); `home_tools` holds the
LangChain tools that routes/home.yaml names."""
