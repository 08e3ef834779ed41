"""The machine fedlib runs on: the launcher's environment (`launcher`), the device, precision
and threads (`devices`), the sites' torch add-ons (`vendor`), where files go and how they are
written (`store`), and the site install (`siteinstall`)."""
