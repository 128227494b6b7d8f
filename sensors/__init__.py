"""The lab-drop sensor, the retention schedule and the failure-alert sensor; installed as the
package `bioscan_sensors`."""
