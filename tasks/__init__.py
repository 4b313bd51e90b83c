"""Task definitions: robot tasks (`tasks.robot`) and text reasoning tasks (`tasks.text`)."""
