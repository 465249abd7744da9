"""MicroPython entry point of the reference MySensors node: a relay and a DS18B20.

Copy ``mysnode.py`` and this file to the board (``mpremote cp mysnode.py main.py :``). Wiring
(change the pins below for your board): the relay's input on GPIO 5, a DS18B20's data line
on GPIO 4 with a 4.7 kΩ pull-up (or, without one, an analog sensor such as a TMP36 on ADC
26), and the serial line on UART 1 (TX 8, RX 9) at 115200 baud to a USB-serial adapter or
transparent serial bridge on the hub's machine. The node id the hub assigns is kept in
``node_id.txt`` on the board's flash.

This file only runs on the board: ``machine``, ``onewire`` and ``ds18x20`` are MicroPython's.
"""

import time

import machine  # type: ignore[import-not-found]
from mysnode import Node

RELAY_PIN = 5
ONEWIRE_PIN = 4
ADC_PIN = 26  # used when no DS18B20 answers
UART_ID, UART_TX, UART_RX, BAUDRATE = 1, 8, 9, 115200
ID_FILE = "node_id.txt"
REPORT_MS = 60_000
HEARTBEAT_MS = 300_000


class Board:
    """The hardware the protocol logic needs (see mysnode.py)."""

    def __init__(self) -> None:
        self.uart = machine.UART(
            UART_ID, baudrate=BAUDRATE, tx=machine.Pin(UART_TX), rx=machine.Pin(UART_RX)
        )
        self.relay_pin = machine.Pin(RELAY_PIN, machine.Pin.OUT, value=0)
        self.sensor = None
        self.rom = None
        try:
            import ds18x20  # type: ignore[import-not-found]
            import onewire  # type: ignore[import-not-found]

            sensor = ds18x20.DS18X20(onewire.OneWire(machine.Pin(ONEWIRE_PIN)))
            roms = sensor.scan()
            if roms:
                self.sensor, self.rom = sensor, roms[0]
        except (ImportError, OSError):
            pass
        self.adc = machine.ADC(machine.Pin(ADC_PIN)) if self.sensor is None else None

    def write(self, data: bytes) -> None:
        self.uart.write(data)

    def ticks_ms(self) -> int:
        return time.ticks_ms()

    def set_relay(self, on: bool) -> None:
        self.relay_pin.value(1 if on else 0)

    def relay(self) -> bool:
        return self.relay_pin.value() == 1

    def temperature(self) -> float | None:
        if self.sensor is not None:
            try:
                self.sensor.convert_temp()
                time.sleep_ms(750)  # a 12-bit conversion
                return self.sensor.read_temp(self.rom)
            except OSError:
                return None
        if self.adc is not None:
            # TMP36: 10 mV per degree, 500 mV at 0 °C, on a 3.3 V 16-bit reading.
            volts = self.adc.read_u16() * 3.3 / 65535
            return (volts - 0.5) * 100
        return None

    def load_id(self) -> int | None:
        try:
            with open(ID_FILE) as file:
                return int(file.read().strip())
        except (OSError, ValueError):
            return None

    def save_id(self, node_id: int) -> None:
        with open(ID_FILE, "w") as file:
            file.write(str(node_id))

    def reboot(self) -> None:
        machine.reset()


def main() -> None:
    """Read the UART, feed the node, let it do what is due; forever."""
    board = Board()
    node = Node(board, report_ms=REPORT_MS, heartbeat_ms=HEARTBEAT_MS)
    while True:
        data = board.uart.read()
        if data:
            node.feed(data)
        node.tick()
        time.sleep_ms(10)


main()
