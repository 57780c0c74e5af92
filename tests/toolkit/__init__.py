"""The participant toolkit (sagaloom.service) and the HTTP participant."""
