"""Slack: `/mldebt`, Block Kit quizzes and the App Home on slack-bolt's AsyncApp (see app.py)."""
