"""What the tests share that is not a fixture: a browser, fake services, jobs run as processes."""
